/* The fake NVML's health side: page retirement and row remapping counters (config keys in
 * fake_nvml.c), and events.
 *
 * Events: events_file names a file the test appends lines to, "<device index> <event type mask>
 * <event data>" or "error <NVML code>"; nvmlEventSetWait delivers each complete line written after
 * the set was created, once, in order (a line for a device or type not registered in the set is
 * skipped, as NVML never reports it), and times out with NVML_ERROR_TIMEOUT when there is none. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake_nvml.h"

void fake_health_reset(dev_t_* d) { d->event_types = 0xF; /* single/double-bit ECC, pstate, Xid */ }

void fake_health_key(dev_t_* d, const char* k, const char* v) {
  unsigned long long n = strtoull(v, NULL, 10);
  if (!strcmp(k, "retired_pending")) d->retired_pending = atoi(v);
  else if (!strcmp(k, "remap_corr")) d->remap_corr = (unsigned)n;
  else if (!strcmp(k, "remap_unc")) d->remap_unc = (unsigned)n;
  else if (!strcmp(k, "remap_pending")) d->remap_pending = (unsigned)n;
  else if (!strcmp(k, "remap_failure")) d->remap_failure = (unsigned)n;
  else if (!strcmp(k, "event_types")) d->event_types = n;
}

EXPORT nvmlReturn_t nvmlDeviceGetRetiredPagesPendingStatus(void* h, int* pending) {
  ENTER(h, "retired_pages");
  *pending = d->retired_pending;
  return OK;
}

/* ---- events ---- */
typedef struct {
  void* device;
  unsigned long long type, data;
  unsigned int gpuInstanceId, computeInstanceId;
} event_data_t;

#define MAX_SETS 8
typedef struct {
  int used;
  long offset; /* bytes of events_file already delivered or skipped */
  unsigned long long masks[MAX_DEVS];
} event_set_t;
static event_set_t sets[MAX_SETS];

static long file_size(void) {
  FILE* f = events_file[0] ? fopen(events_file, "r") : NULL;
  if (f == NULL) return 0;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fclose(f);
  return n;
}

EXPORT nvmlReturn_t nvmlEventSetCreate(event_set_t** out) {
  if (!initialized) return UNINIT;
  if (out == NULL) return INVALID;
  for (int i = 0; i < MAX_SETS; i++) {
    if (!sets[i].used) {
      memset(&sets[i], 0, sizeof sets[i]);
      sets[i].used = 1;
      sets[i].offset = file_size();
      *out = &sets[i];
      return OK;
    }
  }
  return UNKNOWN;
}
EXPORT nvmlReturn_t nvmlEventSetFree(event_set_t* set) {
  if (set == NULL || !set->used) return INVALID;
  set->used = 0;
  return OK;
}
EXPORT nvmlReturn_t nvmlDeviceGetSupportedEventTypes(void* h, unsigned long long* types) {
  ENTER(h, "events");
  *types = d->event_types;
  return OK;
}
EXPORT nvmlReturn_t nvmlDeviceRegisterEvents(void* h, unsigned long long types, event_set_t* set) {
  ENTER(h, "events");
  if (set == NULL || !set->used) return INVALID;
  if ((types & ~d->event_types) != 0) return NOT_SUPPORTED;
  set->masks[d - devs] |= types;
  return OK;
}

/* The next complete line after the set's offset that this set reports; 1 = event, 0 = none. */
static nvmlReturn_t next_event(event_set_t* set, event_data_t* out, int* got) {
  *got = 0;
  FILE* f = events_file[0] ? fopen(events_file, "r") : NULL;
  if (f == NULL) return OK;
  nvmlReturn_t rc = OK;
  char line[256];
  fseek(f, set->offset, SEEK_SET);
  while (!*got && fgets(line, sizeof line, f) != NULL) {
    size_t n = strlen(line);
    if (n == 0 || line[n - 1] != '\n') break; /* still being written */
    set->offset += (long)n;
    long idx = -1;
    unsigned long long type = 0, data = 0;
    int code = 0;
    if (sscanf(line, "error %d", &code) == 1) {
      rc = code;
      *got = 1;
    } else if (sscanf(line, "%ld %llu %llu", &idx, &type, &data) == 3 && idx >= 0 && idx < (long)ndevs &&
               (set->masks[idx] & type) != 0) {
      memset(out, 0, sizeof *out);
      out->device = &devs[idx];
      out->type = type;
      out->data = data;
      out->gpuInstanceId = 0xFFFFFFFF;
      out->computeInstanceId = 0xFFFFFFFF;
      *got = 1;
    }
  }
  fclose(f);
  return rc;
}

static nvmlReturn_t wait_event(event_set_t* set, event_data_t* out, unsigned int timeout_ms) {
  if (!initialized) return UNINIT;
  if (set == NULL || !set->used || out == NULL) return INVALID;
  for (unsigned int waited = 0;; waited += 5) {
    int got = 0;
    nvmlReturn_t rc = next_event(set, out, &got);
    if (got) return rc;
    if (waited >= timeout_ms) return TIMEOUT;
    struct timespec ts = {0, 5 * 1000000L};
    nanosleep(&ts, NULL);
  }
}
EXPORT nvmlReturn_t nvmlEventSetWait(event_set_t* set, event_data_t* out, unsigned int timeout_ms) {
  return wait_event(set, out, timeout_ms);
}

#ifndef FAKE_OLD_DRIVER
EXPORT nvmlReturn_t nvmlEventSetWait_v2(event_set_t* set, event_data_t* out, unsigned int timeout_ms) {
  return wait_event(set, out, timeout_ms);
}
/* Row remapping came with Ampere (R460): the old driver lacks the call. */
EXPORT nvmlReturn_t nvmlDeviceGetRemappedRows(void* h, unsigned int* corr, unsigned int* unc, unsigned int* pending,
                                              unsigned int* failure) {
  ENTER(h, "remapped_rows");
  *corr = d->remap_corr;
  *unc = d->remap_unc;
  *pending = d->remap_pending;
  *failure = d->remap_failure;
  return OK;
}
#endif
