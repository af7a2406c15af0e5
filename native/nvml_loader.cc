#include "nvml_loader.h"

#include "dl_compat.h"

// GCC 11+ headers call this libstdc++ 3.4.29 helper from inline allocation code; defining it here
// keeps the prebuilt loadable with the older libstdc++ of long-term-support distributions.
namespace std {
[[noreturn]] __attribute__((weak)) void __throw_bad_array_new_length() {
  throw std::bad_array_new_length();
}
}  // namespace std

#include <cstdlib>
#include <cstring>
#include <new>

namespace aitbc {

NvmlLibrary::~NvmlLibrary() { close(); }

template <typename Fn>
const char* NvmlLibrary::bind(Fn& slot, std::initializer_list<const char*> names, bool quiet) {
  for (const char* name : names) {
    void* sym = dlsym(handle_, name);
    if (sym != nullptr) {
      slot = reinterpret_cast<Fn>(sym);
      resolved_.emplace_back(name);
      return name;
    }
  }
  slot = nullptr;
  if (!quiet) missing_.emplace_back(*names.begin());
  return nullptr;
}

namespace {

// "nvmlDeviceGetPciInfo_v3" -> 3; an unversioned name -> 1; none bound -> 0.
int versionOf(const char* name) {
  if (name == nullptr) return 0;
  const char* v = std::strrchr(name, '_');
  return v != nullptr && v[1] == 'v' ? std::atoi(v + 2) : 1;
}

}  // namespace

bool NvmlLibrary::open(const std::string& path, std::string& error) {
  close();
  dlerror();
  handle_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle_ == nullptr) {
    const char* e = dlerror();
    error = e != nullptr ? e : ("cannot open " + path);
    return false;
  }
  path_ = path;
  NvmlApi& a = api_;
  bind(a.init, {"nvmlInit_v2", "nvmlInit"});
  bind(a.shutdown, {"nvmlShutdown"});
  bind(a.errorString, {"nvmlErrorString"});
  bind(a.systemGetDriverVersion, {"nvmlSystemGetDriverVersion"});
  bind(a.systemGetNvmlVersion, {"nvmlSystemGetNVMLVersion"});
  bind(a.systemGetCudaDriverVersion, {"nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion"});
  bind(a.deviceGetCount, {"nvmlDeviceGetCount_v2", "nvmlDeviceGetCount"});
  bind(a.deviceGetHandleByIndex, {"nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex"});
  bind(a.deviceGetName, {"nvmlDeviceGetName"});
  bind(a.deviceGetUuid, {"nvmlDeviceGetUUID"});
  // v1 fills only the legacy 16-byte bus id; the reader needs to know which one filled it.
  a.pciInfoVersion = versionOf(
      bind(a.deviceGetPciInfo, {"nvmlDeviceGetPciInfo_v3", "nvmlDeviceGetPciInfo_v2", "nvmlDeviceGetPciInfo"}));
  // Memory: the v2 struct also reports the driver-reserved amount; v1 is the fallback.
  // (Two signatures, so two slots: v1 is bound, or reported missing, only without v2.)
  if (bind(a.deviceGetMemoryInfoV2, {"nvmlDeviceGetMemoryInfo_v2"}, true) == nullptr)
    bind(a.deviceGetMemoryInfo, {"nvmlDeviceGetMemoryInfo"});
  bind(a.deviceGetUtilizationRates, {"nvmlDeviceGetUtilizationRates"});
  bind(a.deviceGetTemperature, {"nvmlDeviceGetTemperature"});
  bind(a.deviceGetPowerUsage, {"nvmlDeviceGetPowerUsage"});
  bind(a.deviceGetPowerManagementLimit, {"nvmlDeviceGetPowerManagementLimit"});
  bind(a.deviceGetEnforcedPowerLimit, {"nvmlDeviceGetEnforcedPowerLimit"});
  bind(a.deviceGetTotalEnergyConsumption, {"nvmlDeviceGetTotalEnergyConsumption"});
  bind(a.deviceGetClockInfo, {"nvmlDeviceGetClockInfo"});
  bind(a.deviceGetMaxClockInfo, {"nvmlDeviceGetMaxClockInfo"});
  bind(a.deviceGetFanSpeed, {"nvmlDeviceGetFanSpeed"});
  bind(a.deviceGetPerformanceState, {"nvmlDeviceGetPerformanceState"});
  bind(a.deviceGetClocksEventReasons,
       {"nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"});
  bind(a.deviceGetEccMode, {"nvmlDeviceGetEccMode"});
  bind(a.deviceGetTotalEccErrors, {"nvmlDeviceGetTotalEccErrors"});
  bind(a.deviceGetCurrPcieLinkGeneration, {"nvmlDeviceGetCurrPcieLinkGeneration"});
  bind(a.deviceGetCurrPcieLinkWidth, {"nvmlDeviceGetCurrPcieLinkWidth"});
  bind(a.deviceGetMaxPcieLinkGeneration, {"nvmlDeviceGetMaxPcieLinkGeneration"});
  bind(a.deviceGetMaxPcieLinkWidth, {"nvmlDeviceGetMaxPcieLinkWidth"});
  bind(a.deviceGetPcieThroughput, {"nvmlDeviceGetPcieThroughput"});
  bind(a.deviceGetCudaComputeCapability, {"nvmlDeviceGetCudaComputeCapability"});
  // v1 records are 16 bytes, v2 and v3 24: the stride of the array the call fills.
  const int processes =
      versionOf(bind(a.deviceGetComputeRunningProcesses,
                     {"nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2",
                      "nvmlDeviceGetComputeRunningProcesses"}));
  a.processInfoSize = processes >= 2 ? sizeof(nvmlProcessInfo_v2_t) : sizeof(nvmlProcessInfo_v1_t);
  bind(a.deviceGetRetiredPagesPendingStatus, {"nvmlDeviceGetRetiredPagesPendingStatus"});
  bind(a.deviceGetRemappedRows, {"nvmlDeviceGetRemappedRows"});
  bind(a.eventSetCreate, {"nvmlEventSetCreate"});
  bind(a.eventSetFree, {"nvmlEventSetFree"});
  bind(a.deviceRegisterEvents, {"nvmlDeviceRegisterEvents"});
  bind(a.deviceGetSupportedEventTypes, {"nvmlDeviceGetSupportedEventTypes"});
  a.eventSetWaitName = bind(a.eventSetWait, {"nvmlEventSetWait_v2", "nvmlEventSetWait"});
  if (a.init == nullptr || a.deviceGetCount == nullptr || a.deviceGetHandleByIndex == nullptr) {
    error = path + " is not a usable NVML library: nvmlInit/nvmlDeviceGetCount/nvmlDeviceGetHandleByIndex missing";
    close();
    return false;
  }
  return true;
}

void NvmlLibrary::close() {
  if (handle_ != nullptr) dlclose(handle_);
  handle_ = nullptr;
  path_.clear();
  api_ = NvmlApi{};
  resolved_.clear();
  missing_.clear();
}

std::string NvmlLibrary::errorString(nvmlReturn_t code) const {
  if (api_.errorString != nullptr) {
    const char* s = api_.errorString(code);
    if (s != nullptr) return s;
  }
  return "NVML error " + std::to_string(code);
}

}  // namespace aitbc
