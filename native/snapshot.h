// Plain C++ snapshot of every device (no N-API here, so it can run on a worker thread).
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "nvml_loader.h"

namespace aitbc {

template <typename T>
using Opt = std::optional<T>;

struct ProcessData {
  unsigned int pid = 0;
  Opt<double> usedMemoryBytes;
};

struct DeviceData {
  unsigned int index = 0;
  // Set when a device-wide failure (GPU_IS_LOST, no handle) stopped the read; other fields unset.
  Opt<int> errorCode;
  std::string errorText;
  Opt<std::string> name, uuid, pciBusId;
  Opt<double> memTotal, memUsed, memFree, memReserved;
  Opt<double> utilGpu, utilMem, temperature;
  Opt<double> powerDrawMw, powerLimitMw, powerEnforcedMw, energyMj;
  Opt<double> smClock, memClock, smClockMax, memClockMax;
  Opt<double> fan, pstate, clockEventReasons;
  Opt<bool> eccCurrent, eccPending;
  Opt<double> eccUncorrectedVolatile;
  Opt<double> pcieGen, pcieWidth, pcieGenMax, pcieWidthMax, pcieTxKBs, pcieRxKBs;
  Opt<int> ccMajor, ccMinor;
  Opt<std::vector<ProcessData>> processes;
};

struct SnapshotData {
  Opt<std::string> driverVersion, nvmlVersion;
  Opt<int> cudaDriverVersion;
  std::vector<DeviceData> devices;
};

struct SnapshotOptions {
  bool pcieThroughput = false;
  bool processes = true;
};

// Thrown for failures that break the whole snapshot (e.g. nvmlDeviceGetCount failing).
struct NvmlFailure {
  int code;
  std::string message;
};

SnapshotData collectSnapshot(const NvmlLibrary& lib, const SnapshotOptions& opts);

}  // namespace aitbc
