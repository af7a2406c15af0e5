/*
 * A fake libnvidia-ml.so.1 for tests: the NVML symbols the addon resolves, with devices and faults
 * read at nvmlInit from the key=value file named in FAKE_NVML_CONFIG (test/fake-nvml/config.ts
 * writes it from a typed object). Built twice: the current API, and with -DFAKE_OLD_DRIVER an old
 * driver that lacks every _v2/_v3 name, the clocks-event call and the energy counter.
 *
 * Keys: init_error, init_delay_ms, count_error, count_error_after, count_error_times, count_claim (a
 * count reported with success instead of count_error's code, in the same window), driver, nvml,
 * cuda, device_count, dev.N.<field> where field is
 * name uuid pci mem_total mem_used mem_reserved util_gpu util_mem temp power power_limit
 * power_enforced energy sm_clock mem_clock sm_clock_max mem_clock_max fan pstate clock_reasons
 * ecc_current ecc_pending ecc_uncorrected pcie_gen pcie_width pcie_gen_max pcie_width_max pcie_tx
 * pcie_rx cc_major cc_minor unsupported (comma list of groups) lost_after (device calls before
 * GPU_IS_LOST) procs (pid:bytes,... bytes may be "na") procs_grow (added after the sizing call)
 * procs_claim (a process count every call claims with INSUFFICIENT_SIZE, never filled)
 * retired_pending remap_corr remap_unc remap_pending remap_failure event_types; events_file.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake_nvml.h"

typedef struct { unsigned long long total, free, used; } mem_v1_t;
typedef struct { unsigned int version; unsigned long long total, reserved, free, used; } mem_v2_t;
typedef struct { unsigned int gpu, memory; } util_t;
typedef struct {
  char busIdLegacy[16];
  unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
  char busId[32];
} pci_t;
typedef struct { unsigned int pid; unsigned long long usedGpuMemory; } proc_v1_t;
typedef struct {
  unsigned int pid; unsigned long long usedGpuMemory; unsigned int gpuInstanceId, computeInstanceId;
} proc_v2_t;

dev_t_ devs[MAX_DEVS];
unsigned int ndevs;
int initialized;
static int init_error;
static long init_delay_ms;
static char driver[64] = "550.54.14", nvml_ver[64] = "12.550.54.14";
static int cuda = 12040;
/* nvmlDeviceGetCount fails with count_error for count_error_times calls after count_error_after. */
static int count_error;
static unsigned int count_claim;
static long count_error_after, count_error_times, count_calls;
char events_file[1024];

static void trim(char* s) {
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ')) s[--n] = 0;
}

static void copy(char* dst, size_t cap, const char* src) {
  strncpy(dst, src, cap - 1);
  dst[cap - 1] = 0;
}

static void parse_procs(dev_t_* d, const char* v) {
  char buf[8192];
  copy(buf, sizeof buf, v);
  d->nprocs = 0;
  for (char* save = NULL, *tok = strtok_r(buf, ",", &save); tok && d->nprocs < MAX_PROCS;
       tok = strtok_r(NULL, ",", &save)) {
    char* colon = strchr(tok, ':');
    d->pids[d->nprocs] = (unsigned int)strtoul(tok, NULL, 10);
    d->pmem[d->nprocs] = colon == NULL || strcmp(colon + 1, "na") == 0 ? NA_BYTES : strtoull(colon + 1, NULL, 10);
    d->nprocs++;
  }
}

static void set_dev(dev_t_* d, const char* k, const char* v) {
  unsigned long long n = strtoull(v, NULL, 10);
  if (!strcmp(k, "name")) copy(d->name, sizeof d->name, v);
  else if (!strcmp(k, "uuid")) copy(d->uuid, sizeof d->uuid, v);
  else if (!strcmp(k, "pci")) copy(d->pci, sizeof d->pci, v);
  else if (!strcmp(k, "unsupported")) copy(d->unsupported, sizeof d->unsupported, v);
  else if (!strcmp(k, "mem_total")) d->mem_total = n;
  else if (!strcmp(k, "mem_used")) d->mem_used = n;
  else if (!strcmp(k, "mem_reserved")) d->mem_reserved = n;
  else if (!strcmp(k, "energy")) d->energy = n;
  else if (!strcmp(k, "clock_reasons")) d->clock_reasons = n;
  else if (!strcmp(k, "ecc_uncorrected")) d->ecc_uncorrected = n;
  else if (!strcmp(k, "util_gpu")) d->util_gpu = (unsigned)n;
  else if (!strcmp(k, "util_mem")) d->util_mem = (unsigned)n;
  else if (!strcmp(k, "temp")) d->temp = (unsigned)n;
  else if (!strcmp(k, "power")) d->power = (unsigned)n;
  else if (!strcmp(k, "power_limit")) d->power_limit = (unsigned)n;
  else if (!strcmp(k, "power_enforced")) d->power_enforced = (unsigned)n;
  else if (!strcmp(k, "sm_clock")) d->sm_clock = (unsigned)n;
  else if (!strcmp(k, "mem_clock")) d->mem_clock = (unsigned)n;
  else if (!strcmp(k, "sm_clock_max")) d->sm_clock_max = (unsigned)n;
  else if (!strcmp(k, "mem_clock_max")) d->mem_clock_max = (unsigned)n;
  else if (!strcmp(k, "fan")) d->fan = (unsigned)n;
  else if (!strcmp(k, "pcie_gen")) d->pcie_gen = (unsigned)n;
  else if (!strcmp(k, "pcie_width")) d->pcie_width = (unsigned)n;
  else if (!strcmp(k, "pcie_gen_max")) d->pcie_gen_max = (unsigned)n;
  else if (!strcmp(k, "pcie_width_max")) d->pcie_width_max = (unsigned)n;
  else if (!strcmp(k, "pcie_tx")) d->pcie_tx = (unsigned)n;
  else if (!strcmp(k, "pcie_rx")) d->pcie_rx = (unsigned)n;
  else if (!strcmp(k, "pstate")) d->pstate = atoi(v);
  else if (!strcmp(k, "ecc_current")) d->ecc_current = atoi(v);
  else if (!strcmp(k, "ecc_pending")) d->ecc_pending = atoi(v);
  else if (!strcmp(k, "cc_major")) d->cc_major = atoi(v);
  else if (!strcmp(k, "cc_minor")) d->cc_minor = atoi(v);
  else if (!strcmp(k, "lost_after")) d->lost_after = atol(v);
  else if (!strcmp(k, "procs")) parse_procs(d, v);
  else if (!strcmp(k, "procs_grow")) d->procs_grow = (unsigned)n;
  else if (!strcmp(k, "procs_claim")) d->procs_claim = (unsigned)n;
  else fake_health_key(d, k, v);
}

static void load_config(void) {
  memset(devs, 0, sizeof devs);
  for (int i = 0; i < MAX_DEVS; i++) {
    devs[i].lost_after = -1;
    fake_health_reset(&devs[i]);
  }
  events_file[0] = 0;
  ndevs = 0;
  init_error = 0;
  init_delay_ms = 0;
  count_error = 0;
  count_claim = 0;
  count_error_after = 0;
  count_error_times = 0;
  count_calls = 0;
  const char* path = getenv("FAKE_NVML_CONFIG");
  if (path == NULL) return;
  FILE* f = fopen(path, "r");
  if (f == NULL) return;
  static char line[16384];
  while (fgets(line, sizeof line, f) != NULL) {
    trim(line);
    char* eq = strchr(line, '=');
    if (eq == NULL || line[0] == '#') continue;
    *eq = 0;
    const char* k = line;
    const char* v = eq + 1;
    if (!strcmp(k, "init_error")) init_error = atoi(v);
    else if (!strcmp(k, "init_delay_ms")) init_delay_ms = atol(v);
    else if (!strcmp(k, "driver")) copy(driver, sizeof driver, v);
    else if (!strcmp(k, "nvml")) copy(nvml_ver, sizeof nvml_ver, v);
    else if (!strcmp(k, "cuda")) cuda = atoi(v);
    else if (!strcmp(k, "events_file")) copy(events_file, sizeof events_file, v);
    else if (!strcmp(k, "count_error")) count_error = atoi(v);
    else if (!strcmp(k, "count_claim")) count_claim = (unsigned)strtoul(v, NULL, 10);
    else if (!strcmp(k, "count_error_after")) count_error_after = atol(v);
    else if (!strcmp(k, "count_error_times")) count_error_times = atol(v);
    else if (!strcmp(k, "device_count")) ndevs = (unsigned)atoi(v) > MAX_DEVS ? MAX_DEVS : (unsigned)atoi(v);
    else if (!strncmp(k, "dev.", 4)) {
      char* dot;
      unsigned long idx = strtoul(k + 4, &dot, 10);
      if (*dot == '.' && idx < MAX_DEVS) set_dev(&devs[idx], dot + 1, v);
    }
  }
  fclose(f);
}

/* Is a field group listed as unsupported on this device? */
static int unsupported(const dev_t_* d, const char* group) {
  size_t n = strlen(group);
  for (const char* p = d->unsupported; (p = strstr(p, group)) != NULL; p += n) {
    int starts = p == d->unsupported || p[-1] == ',';
    int ends = p[n] == 0 || p[n] == ',';
    if (starts && ends) return 1;
  }
  return 0;
}

/* With FAKE_NVML_CALL_LOG set, every device call appends its field group (one per line), so a
 * test can count which calls the addon really makes. */
static void log_call(const char* group) {
  static FILE* log = NULL;
  static int opened = 0;
  if (!opened) {
    const char* path = getenv("FAKE_NVML_CALL_LOG");
    if (path != NULL && *path) log = fopen(path, "a");
    opened = 1;
  }
  if (log != NULL) {
    fprintf(log, "%s\n", group != NULL ? group : "-");
    fflush(log);
  }
}

nvmlReturn_t fake_enter(void* handle, const char* group, dev_t_** out) {
  if (!initialized) return UNINIT;
  log_call(group);
  dev_t_* d = (dev_t_*)handle;
  if (d < devs || d >= devs + ndevs) return INVALID;
  d->calls++;
  if (d->lost_after >= 0 && d->calls > d->lost_after) return GPU_LOST;
  if (group != NULL && unsupported(d, group)) return NOT_SUPPORTED;
  *out = d;
  return OK;
}

static nvmlReturn_t do_init(void) {
  load_config();
  if (init_delay_ms > 0) {
    struct timespec ts = {init_delay_ms / 1000, (init_delay_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
  if (init_error != 0) return init_error;
  initialized = 1;
  return OK;
}

EXPORT nvmlReturn_t nvmlInit(void) { return do_init(); }
EXPORT nvmlReturn_t nvmlShutdown(void) {
  if (!initialized) return UNINIT;
  initialized = 0;
  return OK;
}

EXPORT const char* nvmlErrorString(nvmlReturn_t r) {
  switch (r) {
    case OK: return "Success";
    case UNINIT: return "Uninitialized";
    case INVALID: return "Invalid Argument";
    case NOT_SUPPORTED: return "Not Supported";
    case NOT_FOUND: return "Not Found";
    case INSUFFICIENT: return "Insufficient Size";
    case 9: return "Driver Not Loaded";
    case GPU_LOST: return "GPU is lost";
    case VERSION_MISMATCH: return "Argument version mismatch";
    default: return "Unknown Error";
  }
}

static nvmlReturn_t put_string(char* buf, unsigned int len, const char* s) {
  if (!initialized) return UNINIT;
  if (buf == NULL) return INVALID;
  if (strlen(s) + 1 > len) return INSUFFICIENT;
  memcpy(buf, s, strlen(s) + 1);
  return OK;
}

EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char* b, unsigned int n) { return put_string(b, n, driver); }
EXPORT nvmlReturn_t nvmlSystemGetNVMLVersion(char* b, unsigned int n) { return put_string(b, n, nvml_ver); }
EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion(int* v) {
  if (v == NULL) return INVALID;
  *v = cuda;
  return OK;
}

static nvmlReturn_t get_count(unsigned int* c) {
  if (!initialized) return UNINIT;
  if (c == NULL) return INVALID;
  count_calls++;
  if ((count_error != 0 || count_claim != 0) && count_calls > count_error_after &&
      count_calls <= count_error_after + count_error_times) {
    if (count_error != 0) return count_error;
    *c = count_claim;
    return OK;
  }
  *c = ndevs;
  return OK;
}
EXPORT nvmlReturn_t nvmlDeviceGetCount(unsigned int* c) { return get_count(c); }

static nvmlReturn_t get_handle(unsigned int i, void** h) {
  if (!initialized) return UNINIT;
  if (i >= ndevs || h == NULL) return INVALID;
  ENTER(&devs[i], NULL);
  *h = d;
  return OK;
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int i, void** h) { return get_handle(i, h); }

EXPORT nvmlReturn_t nvmlDeviceGetName(void* h, char* b, unsigned int n) {
  ENTER(h, "name");
  return put_string(b, n, d->name);
}
EXPORT nvmlReturn_t nvmlDeviceGetUUID(void* h, char* b, unsigned int n) {
  ENTER(h, "uuid");
  return put_string(b, n, d->uuid);
}

static nvmlReturn_t get_pci(void* h, pci_t* p, int version) {
  ENTER(h, "pci");
  if (p == NULL) return INVALID;
  memset(p, 0, version == 1 ? 52 : sizeof *p);
  /* The legacy field holds the 13-character form without the upper domain digits. */
  const char* legacy = strlen(d->pci) > 12 ? d->pci + (strlen(d->pci) - 12) : d->pci;
  copy(p->busIdLegacy, sizeof p->busIdLegacy, legacy);
  if (version >= 2) copy(p->busId, sizeof p->busId, d->pci);
  return OK;
}
EXPORT nvmlReturn_t nvmlDeviceGetPciInfo(void* h, pci_t* p) { return get_pci(h, p, 1); }

static nvmlReturn_t get_mem_v1(void* h, mem_v1_t* m) {
  ENTER(h, "memory");
  if (m == NULL) return INVALID;
  m->total = d->mem_total;
  m->used = d->mem_used + d->mem_reserved;
  m->free = d->mem_total - m->used;
  return OK;
}
EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(void* h, mem_v1_t* m) { return get_mem_v1(h, m); }

EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(void* h, util_t* u) {
  ENTER(h, "utilization");
  u->gpu = d->util_gpu;
  u->memory = d->util_mem;
  return OK;
}

#define UINT_GETTER(fn, group, member)                      \
  EXPORT nvmlReturn_t fn(void* h, unsigned int* v) {        \
    ENTER(h, group);                                        \
    if (v == NULL) return INVALID;                          \
    *v = d->member;                                         \
    return OK;                                              \
  }
UINT_GETTER(nvmlDeviceGetPowerUsage, "power", power)
UINT_GETTER(nvmlDeviceGetPowerManagementLimit, "power_limit", power_limit)
UINT_GETTER(nvmlDeviceGetEnforcedPowerLimit, "power_enforced", power_enforced)
UINT_GETTER(nvmlDeviceGetFanSpeed, "fan", fan)
UINT_GETTER(nvmlDeviceGetCurrPcieLinkGeneration, "pcie", pcie_gen)
UINT_GETTER(nvmlDeviceGetCurrPcieLinkWidth, "pcie", pcie_width)
UINT_GETTER(nvmlDeviceGetMaxPcieLinkGeneration, "pcie", pcie_gen_max)
UINT_GETTER(nvmlDeviceGetMaxPcieLinkWidth, "pcie", pcie_width_max)

EXPORT nvmlReturn_t nvmlDeviceGetTemperature(void* h, int sensor, unsigned int* v) {
  ENTER(h, "temperature");
  if (sensor != 0) return INVALID;
  *v = d->temp;
  return OK;
}
EXPORT nvmlReturn_t nvmlDeviceGetClockInfo(void* h, int type, unsigned int* v) {
  ENTER(h, "clocks");
  if (type == 1) *v = d->sm_clock;
  else if (type == 2) *v = d->mem_clock;
  else return INVALID;
  return OK;
}
EXPORT nvmlReturn_t nvmlDeviceGetMaxClockInfo(void* h, int type, unsigned int* v) {
  ENTER(h, "max_clocks");
  if (type == 1) *v = d->sm_clock_max;
  else if (type == 2) *v = d->mem_clock_max;
  else return INVALID;
  return OK;
}
EXPORT nvmlReturn_t nvmlDeviceGetPcieThroughput(void* h, int counter, unsigned int* v) {
  ENTER(h, "pcie_throughput");
  *v = counter == 0 ? d->pcie_tx : d->pcie_rx;
  return OK;
}
EXPORT nvmlReturn_t nvmlDeviceGetPerformanceState(void* h, int* v) {
  ENTER(h, "pstate");
  *v = d->pstate;
  return OK;
}
static nvmlReturn_t get_reasons(void* h, unsigned long long* v) {
  ENTER(h, "clock_reasons");
  *v = d->clock_reasons;
  return OK;
}
EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(void* h, unsigned long long* v) {
  return get_reasons(h, v);
}
EXPORT nvmlReturn_t nvmlDeviceGetEccMode(void* h, int* cur, int* pend) {
  ENTER(h, "ecc");
  *cur = d->ecc_current;
  *pend = d->ecc_pending;
  return OK;
}
EXPORT nvmlReturn_t nvmlDeviceGetTotalEccErrors(void* h, int type, int counter, unsigned long long* v) {
  ENTER(h, "ecc_errors");
  if (type != 1 || counter != 0) return INVALID;
  *v = d->ecc_uncorrected;
  return OK;
}
EXPORT nvmlReturn_t nvmlDeviceGetCudaComputeCapability(void* h, int* major, int* minor) {
  ENTER(h, "cc");
  *major = d->cc_major;
  *minor = d->cc_minor;
  return OK;
}

/* Process lists: the sizing call (count 0 / NULL) makes procs_grow more appear, once. */
static nvmlReturn_t get_procs(void* h, unsigned int* count, void* infos, size_t stride) {
  ENTER(h, "processes");
  if (count == NULL) return INVALID;
  if (d->procs_claim > 0) {
    *count = d->procs_claim;
    return INSUFFICIENT;
  }
  unsigned int have = d->nprocs;
  if (*count == 0 || infos == NULL) {
    *count = have;
    if (have == 0) return OK;
    if (d->procs_grow > 0 && !d->grown) {
      d->grown = 1;
      for (unsigned int i = 0; i < d->procs_grow && d->nprocs < MAX_PROCS; i++) {
        d->pids[d->nprocs] = 50000 + i;
        d->pmem[d->nprocs] = (unsigned long long)(i + 1) << 20;
        d->nprocs++;
      }
    }
    return INSUFFICIENT;
  }
  if (*count < have) {
    *count = have;
    return INSUFFICIENT;
  }
  for (unsigned int i = 0; i < have; i++) {
    unsigned char* p = (unsigned char*)infos + i * stride;
    memset(p, 0, stride);
    if (stride == sizeof(proc_v2_t)) {
      proc_v2_t* e = (proc_v2_t*)p;
      e->pid = d->pids[i];
      e->usedGpuMemory = d->pmem[i];
      e->gpuInstanceId = 0xFFFFFFFF;
      e->computeInstanceId = 0xFFFFFFFF;
    } else {
      proc_v1_t* e = (proc_v1_t*)p;
      e->pid = d->pids[i];
      e->usedGpuMemory = d->pmem[i];
    }
  }
  *count = have;
  return OK;
}
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(void* h, unsigned int* c, proc_v1_t* p) {
  return get_procs(h, c, p, sizeof(proc_v1_t));
}

#ifndef FAKE_OLD_DRIVER
EXPORT nvmlReturn_t nvmlInit_v2(void) { return do_init(); }
EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int* v) { return nvmlSystemGetCudaDriverVersion(v); }
EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int* c) { return get_count(c); }
EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int i, void** h) { return get_handle(i, h); }
EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v2(void* h, pci_t* p) { return get_pci(h, p, 2); }
EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v3(void* h, pci_t* p) { return get_pci(h, p, 3); }
EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(void* h, mem_v2_t* m) {
  ENTER(h, "memory");
  if (m == NULL) return INVALID;
  if (m->version != (unsigned int)(sizeof(mem_v2_t) | (2u << 24))) return VERSION_MISMATCH;
  m->total = d->mem_total;
  m->reserved = d->mem_reserved;
  m->used = d->mem_used;
  m->free = d->mem_total - d->mem_used - d->mem_reserved;
  return OK;
}
EXPORT nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(void* h, unsigned long long* v) {
  ENTER(h, "energy");
  *v = d->energy;
  return OK;
}
EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(void* h, unsigned long long* v) {
  return get_reasons(h, v);
}
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(void* h, unsigned int* c, proc_v2_t* p) {
  return get_procs(h, c, p, sizeof(proc_v2_t));
}
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(void* h, unsigned int* c, proc_v2_t* p) {
  return get_procs(h, c, p, sizeof(proc_v2_t));
}
#endif
