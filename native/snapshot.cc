#include "snapshot.h"

#include <chrono>
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

// Fields whose reads are memoised (see DeviceMemo). kAlways: read every time, but a field the
// device does not support is still remembered and skipped.
enum MemoField : int {
  kPowerLimit,
  kEnergy,
  kSmClockMax,
  kMemClockMax,
  kFan,
  kEcc,
  kPcieGenMax,
  kPcieWidthMax,
  kCc,
  kPowerEnforced,
  kClockReasons,
  kEccErrors,
  kPstate,
  kRetiredPending,
  kRemappedRows,
  kMemoFields
};
static_assert(kMemoFields <= 16, "DeviceMemo::readAtMs holds 16 fields");

constexpr long long kForever = -1;
constexpr long long kAlways = 0;

long long nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool unsupportedCode(nvmlReturn_t rc) {
  return rc == NVML_ERROR_NOT_SUPPORTED || rc == NVML_ERROR_FUNCTION_NOT_FOUND;
}

// Read one memoised field: from the last snapshot while fresh, never when unsupported, else ask
// the driver (`read` stores into the new DeviceData and returns the NVML code).
template <typename Read, typename Copy>
void memoised(DeviceMemo& m, MemoField f, long long ttlMs, long long now, Read&& read, Copy&& copy) {
  const unsigned long long bit = 1ULL << f;
  if (m.unsupported & bit) return;
  const long long at = m.readAtMs[f];
  if (at != 0 && ttlMs != kAlways && (ttlMs == kForever || now - at < ttlMs)) {
    copy();
    return;
  }
  nvmlReturn_t rc = read();
  if (rc == NVML_SUCCESS) {
    m.readAtMs[f] = now;
  } else if (unsupportedCode(rc)) {
    m.unsupported |= bit;
  } else if (isDeviceFatal(rc)) {
    throw DeviceLost{rc};
  }
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
    // An absurd count is a bad value, not a reason to allocate gigabytes: the list stays unknown.
    if (count > kMaxProcesses) return;
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

void readDevice(const NvmlApi& a, nvmlDevice_t dev, const SnapshotOptions& opts, DeviceData& d, DeviceMemo& m) {
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
      d.memoryTotalBytes = static_cast<double>(m.total);
      d.memoryUsedBytes = static_cast<double>(m.used);
      d.memoryFreeBytes = static_cast<double>(m.free);
      d.memoryReservedBytes = static_cast<double>(m.reserved);
    }
  } else if (a.deviceGetMemoryInfo) {
    nvmlMemory_t m{};
    if (field([&] { return a.deviceGetMemoryInfo(dev, &m); })) {
      d.memoryTotalBytes = static_cast<double>(m.total);
      d.memoryUsedBytes = static_cast<double>(m.used);
      d.memoryFreeBytes = static_cast<double>(m.free);
    }
  }
  if (a.deviceGetUtilizationRates) {
    nvmlUtilization_t u{};
    if (field([&] { return a.deviceGetUtilizationRates(dev, &u); })) {
      d.utilizationGpuPct = u.gpu;
      d.utilizationMemoryPct = u.memory;
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
  const long long now = nowMs();
  const DeviceData& last = m.last;
  // A memoised unsigned field: `slot` is the field in both the new and the last DeviceData.
  auto memoUint = [&](MemoField f, long long ttl, nvmlDeviceGetUInt_fn fn, Opt<double> DeviceData::*slot) {
    if (!fn) return;
    memoised(
        m, f, ttl, now,
        [&] {
          nvmlReturn_t rc = fn(dev, &v);
          if (rc == NVML_SUCCESS) d.*slot = v;
          return rc;
        },
        [&] { d.*slot = last.*slot; });
  };
  auto memoEnum = [&](MemoField f, long long ttl, nvmlDeviceGetEnumUInt_fn fn, int arg,
                      Opt<double> DeviceData::*slot) {
    if (!fn) return;
    memoised(
        m, f, ttl, now,
        [&] {
          nvmlReturn_t rc = fn(dev, arg, &v);
          if (rc == NVML_SUCCESS) d.*slot = v;
          return rc;
        },
        [&] { d.*slot = last.*slot; });
  };
  enumField(a.deviceGetTemperature, NVML_TEMPERATURE_GPU, d.temperatureC);
  uintField(a.deviceGetPowerUsage, d.powerDrawMw);
  memoUint(kPowerLimit, 30000, a.deviceGetPowerManagementLimit, &DeviceData::powerLimitMw);
  memoUint(kPowerEnforced, kAlways, a.deviceGetEnforcedPowerLimit, &DeviceData::powerEnforcedLimitMw);
  if (a.deviceGetTotalEnergyConsumption) {
    memoised(
        m, kEnergy, 5000, now,
        [&] {
          nvmlReturn_t rc = a.deviceGetTotalEnergyConsumption(dev, &ull);
          if (rc == NVML_SUCCESS) d.totalEnergyMj = static_cast<double>(ull);
          return rc;
        },
        [&] { d.totalEnergyMj = last.totalEnergyMj; });
  }
  enumField(a.deviceGetClockInfo, NVML_CLOCK_SM, d.smClockMHz);
  enumField(a.deviceGetClockInfo, NVML_CLOCK_MEM, d.memClockMHz);
  memoEnum(kSmClockMax, kForever, a.deviceGetMaxClockInfo, NVML_CLOCK_SM, &DeviceData::smClockMaxMHz);
  memoEnum(kMemClockMax, kForever, a.deviceGetMaxClockInfo, NVML_CLOCK_MEM, &DeviceData::memClockMaxMHz);
  memoUint(kFan, kAlways, a.deviceGetFanSpeed, &DeviceData::fanPct);
  int iv = 0;
  // NVML_PSTATE_UNKNOWN (32) is a value that says nothing: report it as null.
  if (a.deviceGetPerformanceState) {
    memoised(
        m, kPstate, kAlways, now,
        [&] {
          nvmlReturn_t rc = a.deviceGetPerformanceState(dev, &iv);
          if (rc == NVML_SUCCESS && iv >= 0 && iv <= 15) d.pstate = iv;
          return rc;
        },
        [] {});
  }
  if (a.deviceGetClocksEventReasons) {
    memoised(
        m, kClockReasons, kAlways, now,
        [&] {
          nvmlReturn_t rc = a.deviceGetClocksEventReasons(dev, &ull);
          if (rc == NVML_SUCCESS) d.clockEventReasonsMask = static_cast<double>(ull);
          return rc;
        },
        [] {});
  }
  if (a.deviceGetEccMode) {
    memoised(
        m, kEcc, 30000, now,
        [&] {
          int cur = 0, pend = 0;
          nvmlReturn_t rc = a.deviceGetEccMode(dev, &cur, &pend);
          if (rc == NVML_SUCCESS) {
            d.eccModeCurrent = cur != 0;
            d.eccModePending = pend != 0;
          }
          return rc;
        },
        [&] {
          d.eccModeCurrent = last.eccModeCurrent;
          d.eccModePending = last.eccModePending;
        });
  }
  if (a.deviceGetTotalEccErrors) {
    memoised(
        m, kEccErrors, kAlways, now,
        [&] {
          nvmlReturn_t rc =
              a.deviceGetTotalEccErrors(dev, NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_VOLATILE_ECC, &ull);
          if (rc == NVML_SUCCESS) d.eccUncorrectedVolatile = static_cast<double>(ull);
          return rc;
        },
        [] {});
  }
  // Read every snapshot (a reset clears them and the verdict must follow); a device without page
  // retirement (consumer cards) or row remapping (before Ampere) is asked once.
  if (a.deviceGetRetiredPagesPendingStatus) {
    memoised(
        m, kRetiredPending, kAlways, now,
        [&] {
          int pending = 0;
          nvmlReturn_t rc = a.deviceGetRetiredPagesPendingStatus(dev, &pending);
          if (rc == NVML_SUCCESS) d.retiredPagesPending = pending != 0;
          return rc;
        },
        [] {});
  }
  if (a.deviceGetRemappedRows) {
    memoised(
        m, kRemappedRows, kAlways, now,
        [&] {
          unsigned int corr = 0, unc = 0, pending = 0, failure = 0;
          nvmlReturn_t rc = a.deviceGetRemappedRows(dev, &corr, &unc, &pending, &failure);
          if (rc == NVML_SUCCESS) {
            d.remappedRowsCorrectable = corr;
            d.remappedRowsUncorrectable = unc;
            d.remapPending = pending != 0;
            d.remapFailure = failure != 0;
          }
          return rc;
        },
        [] {});
  }
  uintField(a.deviceGetCurrPcieLinkGeneration, d.pcieLinkGen);
  uintField(a.deviceGetCurrPcieLinkWidth, d.pcieLinkWidth);
  memoUint(kPcieGenMax, kForever, a.deviceGetMaxPcieLinkGeneration, &DeviceData::pcieLinkGenMax);
  memoUint(kPcieWidthMax, kForever, a.deviceGetMaxPcieLinkWidth, &DeviceData::pcieLinkWidthMax);
  if (opts.pcieThroughput) {
    // Each of these blocks ~20 ms on real hardware: only when asked.
    enumField(a.deviceGetPcieThroughput, NVML_PCIE_UTIL_TX_BYTES, d.pcieTxKBs);
    enumField(a.deviceGetPcieThroughput, NVML_PCIE_UTIL_RX_BYTES, d.pcieRxKBs);
  }
  if (a.deviceGetCudaComputeCapability) {
    memoised(
        m, kCc, kForever, now,
        [&] {
          int major = 0, minor = 0;
          nvmlReturn_t rc = a.deviceGetCudaComputeCapability(dev, &major, &minor);
          if (rc == NVML_SUCCESS) {
            d.computeCapabilityMajor = major;
            d.computeCapabilityMinor = minor;
          }
          return rc;
        },
        [&] {
          d.computeCapabilityMajor = last.computeCapabilityMajor;
          d.computeCapabilityMinor = last.computeCapabilityMinor;
        });
  }
  if (opts.processes) readProcesses(a, dev, d);
}

}  // namespace

SnapshotData collectSnapshot(const NvmlLibrary& lib, const SnapshotOptions& opts, FieldMemo& memo) {
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
  if (rc != NVML_SUCCESS) throw NvmlFailure(rc, "nvmlDeviceGetCount: " + lib.errorString(rc));
  if (count > kMaxDevices)
    throw std::length_error("nvmlDeviceGetCount reported " + std::to_string(count) + " devices (at most " +
                            std::to_string(kMaxDevices) + " make sense): the NVML library is broken");
  s.devices.resize(count);
  if (memo.devices.size() != count) memo.devices.assign(count, DeviceMemo{});
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
    DeviceMemo& m = memo.devices[i];
    try {
      readDevice(a, dev, opts, d, m);
      // Another card at this index (hot-plug, re-enumeration): what we knew was about another GPU.
      const std::string uuid = d.uuid.value_or("");
      if (m.uuid.empty()) {
        m.uuid = uuid;
      } else if (m.uuid != uuid) {
        m = DeviceMemo{};
        m.uuid = uuid;
        d = DeviceData{};
        d.index = i;
        readDevice(a, dev, opts, d, m);
      }
      m.last = d;
    } catch (const DeviceLost& lost) {
      m = DeviceMemo{};
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
