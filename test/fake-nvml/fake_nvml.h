/* Shared by the fake NVML's sources (fake_nvml.c: devices and fields; fake_health.c: the service
 * counters and events): the device table loaded from FAKE_NVML_CONFIG and the common prologue. */
#ifndef FAKE_NVML_H
#define FAKE_NVML_H

#define EXPORT __attribute__((visibility("default")))
#define MAX_DEVS 64
#define MAX_PROCS 512
#define NA_BYTES 0xFFFFFFFFFFFFFFFFULL

typedef int nvmlReturn_t;
enum {
  OK = 0, UNINIT = 1, INVALID = 2, NOT_SUPPORTED = 3, NOT_FOUND = 6, INSUFFICIENT = 7,
  TIMEOUT = 10, GPU_LOST = 15, VERSION_MISMATCH = 25, UNKNOWN = 999
};

typedef struct {
  char name[96], uuid[96], pci[32], unsupported[512];
  unsigned long long mem_total, mem_used, mem_reserved, energy, clock_reasons, ecc_uncorrected;
  unsigned int util_gpu, util_mem, temp, power, power_limit, power_enforced;
  unsigned int sm_clock, mem_clock, sm_clock_max, mem_clock_max, fan, pcie_gen, pcie_width;
  unsigned int pcie_gen_max, pcie_width_max, pcie_tx, pcie_rx;
  int pstate, ecc_current, ecc_pending, cc_major, cc_minor, retired_pending;
  unsigned int remap_corr, remap_unc, remap_pending, remap_failure;
  unsigned long long event_types;
  long lost_after; /* -1: never */
  long calls;
  unsigned int nprocs, procs_grow, grown, procs_claim;
  unsigned int pids[MAX_PROCS];
  unsigned long long pmem[MAX_PROCS];
} dev_t_;

extern dev_t_ devs[MAX_DEVS];
extern unsigned int ndevs;
extern int initialized;
extern char events_file[1024];

/* Common prologue of every device call: initialized, valid handle, lost countdown, support. */
nvmlReturn_t fake_enter(void* handle, const char* group, dev_t_** out);

/* fake_health.c: a device's health defaults, and its dev.N.<key> settings. */
void fake_health_reset(dev_t_* d);
void fake_health_key(dev_t_* d, const char* k, const char* v);

#define ENTER(h, group)                            \
  dev_t_* d = NULL;                                \
  nvmlReturn_t rc_ = fake_enter((h), (group), &d); \
  if (rc_ != OK) return rc_;

#endif
