// NVML health events (Xid critical errors, double- and single-bit ECC) watched on a thread of the
// addon's own and handed to JavaScript without blocking the event loop: startEvents, stopEvents,
// eventsRunning on the addon's exports (binding.d.ts types them).
#pragma once

#include <napi.h>

#include "nvml_loader.h"

namespace aitbc {

// Defined in addon.cc: a hold on the open NVML session under `key` (nullptr when NVML is not
// open), so NVML stays initialised while the event thread waits; and giving that hold back.
const NvmlLibrary* holdSession(napi_env key);
void releaseSession(napi_env key);

// The event thread's cleanup hook is added by startEvents, after the session's (added at load):
// hooks run last-in first-out, so an environment's teardown joins the thread before NVML shuts down.
void registerHealthEvents(Napi::Env env, Napi::Object exports);

}  // namespace aitbc
