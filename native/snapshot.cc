#include "snapshot.h"

#include <cstring>
#include <memory>

namespace aitbc {
namespace {

// A code that means the device itself is gone; every other per-field error just nulls the field.
bool isDeviceFatal(nvmlReturn_t rc) { return rc == NVML_ERROR_GPU_IS_LOST; }

struct DeviceLost {
  nvmlReturn_t code;
};

// Run one field read: store on success, null on any error, escalate device-fatal codes.
template <typename Fn>
bool field(Fn&& call) {
  nvmlReturn_t rc = call();
  if (rc == NVML_SUCCESS) return true;
  if (isDeviceFatal(rc)) throw DeviceLost{rc};
  return false;
}

std::string boundedString(const char* buf, size_t cap) { return std::string(buf, strnlen(buf, cap)); }

void readProcesses(const NvmlApi& a, nvmlDevice_t dev, DeviceData& d) {
  if (a.deviceGetComputeRunningProcesses == nullptr) return;
  // INSUFFICIENT_SIZE protocol: ask with 0, allocate, ask again; the list can grow in between,
  // so retry a few times with the new count (plus a little slack).
  unsigned int count = 0;
  nvmlReturn_t rc = a.deviceGetComputeRunningProcesses(dev, &count, nullptr);
  if (rc == NVML_SUCCESS) {
    d.processes = std::vector<ProcessData>{};
    return;
  }
  std::unique_ptr<unsigned char[]> buf;
  for (int attempt = 0; attempt < 5 && rc == NVML_ERROR_INSUFFICIENT_SIZE; ++attempt) {
    unsigned int cap = count + 2;
    buf.reset(new unsigned char[static_cast<size_t>(cap) * a.processInfoSize]());
    count = cap;
    rc = a.deviceGetComputeRunningProcesses(dev, &count, buf.get());
  }
  if (rc != NVML_SUCCESS) {
    if (isDeviceFatal(rc)) throw DeviceLost{rc};
    return;
  }
  std::vector<ProcessData> out;
  out.reserve(count);
  for (unsigned int i = 0; i < count; ++i) {
    const unsigned char* p = buf.get() + static_cast<size_t>(i) * a.processInfoSize;
    // v1 and v2/v3 share the leading {pid, usedGpuMemory}; only the stride differs.
    nvmlProcessInfo_v1_t head;
    std::memcpy(&head, p, sizeof head);
    ProcessData pd;
    pd.pid = head.pid;
    if (head.usedGpuMemory != NVML_VALUE_NOT_AVAILABLE) pd.usedMemoryBytes = static_cast<double>(head.usedGpuMemory);
    out.push_back(pd);
  }
  d.processes = std::move(out);
}

void readDevice(const NvmlApi& a, nvmlDevice_t dev, const SnapshotOptions& opts, DeviceData& d) {
  char buf[256];
  if (a.deviceGetName && field([&] { return a.deviceGetName(dev, buf, sizeof buf); }))
    d.name = boundedString(buf, sizeof buf);
  if (a.deviceGetUuid && field([&] { return a.deviceGetUuid(dev, buf, sizeof buf); }))
    d.uuid = boundedString(buf, sizeof buf);
  if (a.deviceGetPciInfo) {
    nvmlPciInfo_t pci;
    std::memset(&pci, 0, sizeof pci);
    if (field([&] { return a.deviceGetPciInfo(dev, &pci); })) {
      std::string id = a.pciInfoVersion >= 2 ? boundedString(pci.busId, sizeof pci.busId) : "";
      if (id.empty()) id = boundedString(pci.busIdLegacy, sizeof pci.busIdLegacy);
      if (!id.empty()) d.pciBusId = id;
    }
  }
  if (a.deviceGetMemoryInfoV2) {
    nvmlMemory_v2_t m;
    std::memset(&m, 0, sizeof m);
    m.version = nvmlMemory_v2;
    if (field([&] { return a.deviceGetMemoryInfoV2(dev, &m); })) {
      d.memTotal = static_cast<double>(m.total);
      d.memUsed = static_cast<double>(m.used);
      d.memFree = static_cast<double>(m.free);
      d.memReserved = static_cast<double>(m.reserved);
    }
  } else if (a.deviceGetMemoryInfo) {
    nvmlMemory_t m{};
    if (field([&] { return a.deviceGetMemoryInfo(dev, &m); })) {
      d.memTotal = static_cast<double>(m.total);
      d.memUsed = static_cast<double>(m.used);
      d.memFree = static_cast<double>(m.free);
    }
  }
  if (a.deviceGetUtilizationRates) {
    nvmlUtilization_t u{};
    if (field([&] { return a.deviceGetUtilizationRates(dev, &u); })) {
      d.utilGpu = u.gpu;
      d.utilMem = u.memory;
    }
  }
  unsigned int v = 0;
  unsigned long long ull = 0;
  auto uintField = [&](nvmlDeviceGetUInt_fn fn, Opt<double>& slot) {
    if (fn && field([&] { return fn(dev, &v); })) slot = v;
  };
  auto enumField = [&](nvmlDeviceGetEnumUInt_fn fn, int arg, Opt<double>& slot) {
    if (fn && field([&] { return fn(dev, arg, &v); })) slot = v;
  };
  enumField(a.deviceGetTemperature, NVML_TEMPERATURE_GPU, d.temperature);
  uintField(a.deviceGetPowerUsage, d.powerDrawMw);
  uintField(a.deviceGetPowerManagementLimit, d.powerLimitMw);
  uintField(a.deviceGetEnforcedPowerLimit, d.powerEnforcedMw);
  if (a.deviceGetTotalEnergyConsumption && field([&] { return a.deviceGetTotalEnergyConsumption(dev, &ull); }))
    d.energyMj = static_cast<double>(ull);
  enumField(a.deviceGetClockInfo, NVML_CLOCK_SM, d.smClock);
  enumField(a.deviceGetClockInfo, NVML_CLOCK_MEM, d.memClock);
  enumField(a.deviceGetMaxClockInfo, NVML_CLOCK_SM, d.smClockMax);
  enumField(a.deviceGetMaxClockInfo, NVML_CLOCK_MEM, d.memClockMax);
  uintField(a.deviceGetFanSpeed, d.fan);
  int iv = 0;
  // NVML_PSTATE_UNKNOWN (32) is a value that says nothing: report it as null.
  if (a.deviceGetPerformanceState && field([&] { return a.deviceGetPerformanceState(dev, &iv); }) && iv >= 0 &&
      iv <= 15)
    d.pstate = iv;
  if (a.deviceGetClocksEventReasons && field([&] { return a.deviceGetClocksEventReasons(dev, &ull); }))
    d.clockEventReasons = static_cast<double>(ull);
  int cur = 0, pend = 0;
  if (a.deviceGetEccMode && field([&] { return a.deviceGetEccMode(dev, &cur, &pend); })) {
    d.eccCurrent = cur != 0;
    d.eccPending = pend != 0;
  }
  if (a.deviceGetTotalEccErrors && field([&] {
        return a.deviceGetTotalEccErrors(dev, NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_VOLATILE_ECC, &ull);
      }))
    d.eccUncorrectedVolatile = static_cast<double>(ull);
  uintField(a.deviceGetCurrPcieLinkGeneration, d.pcieGen);
  uintField(a.deviceGetCurrPcieLinkWidth, d.pcieWidth);
  uintField(a.deviceGetMaxPcieLinkGeneration, d.pcieGenMax);
  uintField(a.deviceGetMaxPcieLinkWidth, d.pcieWidthMax);
  if (opts.pcieThroughput) {
    // Each of these blocks ~20 ms on real hardware: only when asked.
    enumField(a.deviceGetPcieThroughput, NVML_PCIE_UTIL_TX_BYTES, d.pcieTxKBs);
    enumField(a.deviceGetPcieThroughput, NVML_PCIE_UTIL_RX_BYTES, d.pcieRxKBs);
  }
  int major = 0, minor = 0;
  if (a.deviceGetCudaComputeCapability &&
      field([&] { return a.deviceGetCudaComputeCapability(dev, &major, &minor); })) {
    d.ccMajor = major;
    d.ccMinor = minor;
  }
  if (opts.processes) readProcesses(a, dev, d);
}

}  // namespace

SnapshotData collectSnapshot(const NvmlLibrary& lib, const SnapshotOptions& opts) {
  const NvmlApi& a = lib.api();
  SnapshotData s;
  char buf[96];
  if (a.systemGetDriverVersion && a.systemGetDriverVersion(buf, sizeof buf) == NVML_SUCCESS)
    s.driverVersion = boundedString(buf, sizeof buf);
  if (a.systemGetNvmlVersion && a.systemGetNvmlVersion(buf, sizeof buf) == NVML_SUCCESS)
    s.nvmlVersion = boundedString(buf, sizeof buf);
  int cuda = 0;
  if (a.systemGetCudaDriverVersion && a.systemGetCudaDriverVersion(&cuda) == NVML_SUCCESS) s.cudaDriverVersion = cuda;

  unsigned int count = 0;
  nvmlReturn_t rc = a.deviceGetCount(&count);
  if (rc != NVML_SUCCESS) throw NvmlFailure{rc, "nvmlDeviceGetCount: " + lib.errorString(rc)};
  s.devices.resize(count);
  for (unsigned int i = 0; i < count; ++i) {
    DeviceData& d = s.devices[i];
    d.index = i;
    nvmlDevice_t dev = nullptr;
    rc = a.deviceGetHandleByIndex(i, &dev);
    if (rc != NVML_SUCCESS) {
      d.errorCode = rc;
      d.errorText = "nvmlDeviceGetHandleByIndex: " + lib.errorString(rc);
      continue;
    }
    try {
      readDevice(a, dev, opts, d);
    } catch (const DeviceLost& lost) {
      DeviceData failed;
      failed.index = i;
      failed.uuid = d.uuid;
      failed.name = d.name;
      failed.errorCode = lost.code;
      failed.errorText = lib.errorString(lost.code);
      d = std::move(failed);
    }
  }
  return s;
}

}  // namespace aitbc
