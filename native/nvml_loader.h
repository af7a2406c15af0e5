// Loads libnvidia-ml with dlopen and resolves every symbol once, preferring versioned names.
#pragma once
#include <string>
#include <vector>

#include "nvml_api.h"

namespace aitbc {

struct NvmlApi {
  nvmlInit_fn init = nullptr;
  nvmlShutdown_fn shutdown = nullptr;
  nvmlErrorString_fn errorString = nullptr;
  nvmlSystemGetString_fn systemGetDriverVersion = nullptr;
  nvmlSystemGetString_fn systemGetNvmlVersion = nullptr;
  nvmlSystemGetInt_fn systemGetCudaDriverVersion = nullptr;
  nvmlDeviceGetCount_fn deviceGetCount = nullptr;
  nvmlDeviceGetHandleByIndex_fn deviceGetHandleByIndex = nullptr;
  nvmlDeviceGetString_fn deviceGetName = nullptr;
  nvmlDeviceGetString_fn deviceGetUuid = nullptr;
  nvmlDeviceGetPciInfo_fn deviceGetPciInfo = nullptr;
  nvmlDeviceGetMemoryInfo_v2_fn deviceGetMemoryInfoV2 = nullptr;
  nvmlDeviceGetMemoryInfo_fn deviceGetMemoryInfo = nullptr;
  nvmlDeviceGetUtilizationRates_fn deviceGetUtilizationRates = nullptr;
  nvmlDeviceGetEnumUInt_fn deviceGetTemperature = nullptr;
  nvmlDeviceGetUInt_fn deviceGetPowerUsage = nullptr;
  nvmlDeviceGetUInt_fn deviceGetPowerManagementLimit = nullptr;
  nvmlDeviceGetUInt_fn deviceGetEnforcedPowerLimit = nullptr;
  nvmlDeviceGetULL_fn deviceGetTotalEnergyConsumption = nullptr;
  nvmlDeviceGetEnumUInt_fn deviceGetClockInfo = nullptr;
  nvmlDeviceGetEnumUInt_fn deviceGetMaxClockInfo = nullptr;
  nvmlDeviceGetUInt_fn deviceGetFanSpeed = nullptr;
  nvmlDeviceGetInt_fn deviceGetPerformanceState = nullptr;
  nvmlDeviceGetULL_fn deviceGetClocksEventReasons = nullptr;
  nvmlDeviceGetEccMode_fn deviceGetEccMode = nullptr;
  nvmlDeviceGetTotalEccErrors_fn deviceGetTotalEccErrors = nullptr;
  nvmlDeviceGetUInt_fn deviceGetCurrPcieLinkGeneration = nullptr;
  nvmlDeviceGetUInt_fn deviceGetCurrPcieLinkWidth = nullptr;
  nvmlDeviceGetUInt_fn deviceGetMaxPcieLinkGeneration = nullptr;
  nvmlDeviceGetUInt_fn deviceGetMaxPcieLinkWidth = nullptr;
  nvmlDeviceGetEnumUInt_fn deviceGetPcieThroughput = nullptr;
  nvmlDeviceGetCudaComputeCapability_fn deviceGetCudaComputeCapability = nullptr;
  nvmlDeviceGetProcesses_fn deviceGetComputeRunningProcesses = nullptr;
  nvmlDeviceGetRetiredPagesPendingStatus_fn deviceGetRetiredPagesPendingStatus = nullptr;
  nvmlDeviceGetRemappedRows_fn deviceGetRemappedRows = nullptr;
  // Health events (native/health_events.cc); eventSetWait is _v2 when the driver has it.
  nvmlEventSetCreate_fn eventSetCreate = nullptr;
  nvmlEventSetFree_fn eventSetFree = nullptr;
  nvmlEventSetWait_fn eventSetWait = nullptr;
  nvmlDeviceRegisterEvents_fn deviceRegisterEvents = nullptr;
  nvmlDeviceGetULL_fn deviceGetSupportedEventTypes = nullptr;
  // Element size of the array the resolved process call fills (16 for v1, 24 for v2/v3).
  size_t processInfoSize = 0;
  // The pci call that resolved: 3, 2 or 1 (v1 fills only the legacy 16-byte bus id).
  int pciInfoVersion = 0;
  // The wait call that resolved ("nvmlEventSetWait_v2" or "nvmlEventSetWait"), or null.
  const char* eventSetWaitName = nullptr;
};

class NvmlLibrary {
 public:
  NvmlLibrary() = default;
  ~NvmlLibrary();
  NvmlLibrary(const NvmlLibrary&) = delete;
  NvmlLibrary& operator=(const NvmlLibrary&) = delete;

  // dlopen + dlsym. False with `error` set (dlerror text) when the library cannot be opened or
  // lacks even nvmlInit; a missing optional symbol only leaves its pointer null.
  bool open(const std::string& path, std::string& error);
  void close();
  bool isOpen() const { return handle_ != nullptr; }

  const NvmlApi& api() const { return api_; }
  const std::string& path() const { return path_; }
  // Symbol names actually bound ("nvmlInit_v2", ...) and the logical calls left unresolved.
  const std::vector<std::string>& resolved() const { return resolved_; }
  const std::vector<std::string>& missing() const { return missing_; }
  std::string errorString(nvmlReturn_t code) const;

 private:
  // The one resolver: binds `slot` to the first of `names` the library exports (newest first),
  // records it in resolved_ (or the first name in missing_ unless `quiet`), and returns the name
  // bound, or null.
  template <typename Fn>
  const char* bind(Fn& slot, std::initializer_list<const char*> names, bool quiet = false);

  void* handle_ = nullptr;
  std::string path_;
  NvmlApi api_;
  std::vector<std::string> resolved_;
  std::vector<std::string> missing_;
};

}  // namespace aitbc
