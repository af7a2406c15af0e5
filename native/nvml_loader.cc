#include "nvml_loader.h"

#include "dl_compat.h"

// GCC 11+ headers call this libstdc++ 3.4.29 helper from inline allocation code; defining it here
// keeps the prebuilt loadable with the older libstdc++ of long-term-support distributions.
namespace std {
[[noreturn]] __attribute__((weak)) void __throw_bad_array_new_length() {
  throw std::bad_array_new_length();
}
}  // namespace std

#include <cstring>
#include <new>

namespace aitbc {

NvmlLibrary::~NvmlLibrary() { close(); }

void* NvmlLibrary::resolve(std::initializer_list<const char*> names, const char** which) {
  for (const char* name : names) {
    void* sym = dlsym(handle_, name);
    if (sym != nullptr) {
      *which = name;
      return sym;
    }
  }
  *which = nullptr;
  return nullptr;
}

template <typename Fn>
void NvmlLibrary::bind(Fn& slot, std::initializer_list<const char*> names) {
  const char* which = nullptr;
  slot = reinterpret_cast<Fn>(resolve(names, &which));
  if (which != nullptr) {
    resolved_.emplace_back(which);
  } else {
    missing_.emplace_back(*names.begin());
  }
}

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
  {
    const char* which = nullptr;
    a.deviceGetPciInfo = reinterpret_cast<nvmlDeviceGetPciInfo_fn>(
        resolve({"nvmlDeviceGetPciInfo_v3", "nvmlDeviceGetPciInfo_v2", "nvmlDeviceGetPciInfo"}, &which));
    if (which != nullptr) {
      resolved_.emplace_back(which);
      a.pciInfoVersion = std::strcmp(which, "nvmlDeviceGetPciInfo_v3") == 0   ? 3
                         : std::strcmp(which, "nvmlDeviceGetPciInfo_v2") == 0 ? 2
                                                                              : 1;
    } else {
      missing_.emplace_back("nvmlDeviceGetPciInfo_v3");
    }
  }
  // Memory: the v2 struct also reports the driver-reserved amount; v1 is the fallback.
  bind(a.deviceGetMemoryInfoV2, {"nvmlDeviceGetMemoryInfo_v2"});
  if (a.deviceGetMemoryInfoV2 != nullptr) {
    a.deviceGetMemoryInfo = nullptr;
  } else {
    missing_.pop_back();
    bind(a.deviceGetMemoryInfo, {"nvmlDeviceGetMemoryInfo"});
  }
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
  {
    const char* which = nullptr;
    a.deviceGetComputeRunningProcesses = reinterpret_cast<nvmlDeviceGetProcesses_fn>(
        resolve({"nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2",
                 "nvmlDeviceGetComputeRunningProcesses"},
                &which));
    if (which != nullptr) {
      resolved_.emplace_back(which);
      a.processInfoSize = std::strcmp(which, "nvmlDeviceGetComputeRunningProcesses") == 0
                              ? sizeof(nvmlProcessInfo_v1_t)
                              : sizeof(nvmlProcessInfo_v2_t);
    } else {
      missing_.emplace_back("nvmlDeviceGetComputeRunningProcesses_v3");
    }
  }
  bind(a.deviceGetRetiredPagesPendingStatus, {"nvmlDeviceGetRetiredPagesPendingStatus"});
  bind(a.deviceGetRemappedRows, {"nvmlDeviceGetRemappedRows"});
  bind(a.eventSetCreate, {"nvmlEventSetCreate"});
  bind(a.eventSetFree, {"nvmlEventSetFree"});
  bind(a.deviceRegisterEvents, {"nvmlDeviceRegisterEvents"});
  bind(a.deviceGetSupportedEventTypes, {"nvmlDeviceGetSupportedEventTypes"});
  {
    const char* which = nullptr;
    a.eventSetWait =
        reinterpret_cast<nvmlEventSetWait_fn>(resolve({"nvmlEventSetWait_v2", "nvmlEventSetWait"}, &which));
    if (which != nullptr) {
      resolved_.emplace_back(which);
      a.eventSetWaitName = which;
    } else {
      missing_.emplace_back("nvmlEventSetWait_v2");
    }
  }
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
