// Plain C++ snapshot of every device (no N-API here, so it can run on a worker thread).
#pragma once
#include <optional>
#include <stdexcept>
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

// Each per-device NVML fact under its one name: the DeviceData member, the packed row the addon
// exports (addon.cc) and the TypeScript field (src/gpu/nvml-fields.ts) are all this name. A fact
// is a number (units in the name, as NVML gives them) or a flag (packed as 1/0).
#define AITBC_NVML_NUMBERS(X)                                                                       \
  X(memoryTotalBytes) X(memoryUsedBytes) X(memoryFreeBytes)                                          \
  X(memoryReservedBytes) /* only from nvmlDeviceGetMemoryInfo_v2 */                                  \
  X(utilizationGpuPct) X(utilizationMemoryPct) X(temperatureC)                                       \
  X(powerDrawMw) X(powerLimitMw) X(powerEnforcedLimitMw) X(totalEnergyMj)                            \
  X(smClockMHz) X(memClockMHz) X(smClockMaxMHz) X(memClockMaxMHz)                                    \
  X(fanPct) X(pstate) X(clockEventReasonsMask) X(eccUncorrectedVolatile)                             \
  X(remappedRowsCorrectable) X(remappedRowsUncorrectable)                                            \
  X(pcieLinkGen) X(pcieLinkWidth) X(pcieLinkGenMax) X(pcieLinkWidthMax) X(pcieTxKBs) X(pcieRxKBs)
// Service counters among the flags: a page retirement or row remap waits for a reset; a remap failed.
#define AITBC_NVML_FLAGS(X) \
  X(eccModeCurrent) X(eccModePending) X(retiredPagesPending) X(remapPending) X(remapFailure)

struct DeviceData {
  unsigned int index = 0;
  // Set when a device-wide failure (GPU_IS_LOST, no handle) stopped the read; other fields unset.
  Opt<int> errorCode;
  std::string errorText;
  Opt<std::string> name, uuid, pciBusId;
#define AITBC_NUMBER_MEMBER(n) Opt<double> n;
  AITBC_NVML_NUMBERS(AITBC_NUMBER_MEMBER)
#undef AITBC_NUMBER_MEMBER
#define AITBC_FLAG_MEMBER(n) Opt<bool> n;
  AITBC_NVML_FLAGS(AITBC_FLAG_MEMBER)
#undef AITBC_FLAG_MEMBER
  // Packed as two rows; TypeScript makes them one {major, minor}.
  Opt<int> computeCapabilityMajor, computeCapabilityMinor;
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

// What earlier snapshots taught about each device, so a real driver's slow calls are not paid on
// every snapshot (measured on an H200, driver 580: total energy ~3.3 ms, max clocks ~1.5 ms each,
// power limit / ECC mode / an unsupported fan ~160 us; everything else ~1-8 us):
// - a field the device answered NOT_SUPPORTED (or whose symbol is missing) is not asked again;
// - fields that cannot change while the driver is loaded (max clocks, max PCIe link, compute
//   capability) are read once; admin-changeable settings (power limit, ECC mode) every 30 s;
//   the energy counter every 5 s.
// Keyed by device index and reset when the UUID at that index changes or the device is lost.
struct DeviceMemo {
  std::string uuid;
  unsigned long long unsupported = 0;  // one bit per MemoField
  long long readAtMs[16] = {};         // steady-clock ms of the last good read; 0 = never
  DeviceData last;
};

struct FieldMemo {
  std::vector<DeviceMemo> devices;
  void clear() { devices.clear(); }
};

// Thrown for failures that break the whole snapshot (e.g. nvmlDeviceGetCount failing): an NVML
// return code with its text. Any other exception out of a snapshot (std::bad_alloc, a count no
// driver reports) is a native error without an NVML code.
struct NvmlFailure : std::runtime_error {
  NvmlFailure(int c, const std::string& message) : std::runtime_error(message), code(c) {}
  int code;
};

// More devices than any NVML reports (it enumerates at most a few hundred): a broken library.
constexpr unsigned int kMaxDevices = 4096;
// More compute processes on one device than a sane driver lists: the list is left unknown.
constexpr unsigned int kMaxProcesses = 1U << 16;

SnapshotData collectSnapshot(const NvmlLibrary& lib, const SnapshotOptions& opts, FieldMemo& memo);

}  // namespace aitbc
