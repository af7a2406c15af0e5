// The addon's calls about the host rather than NVML: can a library be loaded (probeLibraries) and
// the state directory's lock (lockFile, unlockFile). Registered on the addon's exports by Init.
#pragma once

#include <napi.h>

namespace aitbc {

void registerHostCalls(Napi::Env env, Napi::Object exports);

}  // namespace aitbc
