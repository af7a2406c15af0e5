// N-API glue: open (async: dlopen + nvmlInit off the JS thread), snapshot (sync and async),
// close. One NVML session per process, guarded by a mutex; binding.d.ts types this surface.
#include <napi.h>

#include <cmath>
#include <cstdlib>
#include <mutex>

#include "snapshot.h"

namespace {

using aitbc::NvmlFailure;
using aitbc::NvmlLibrary;
using aitbc::SnapshotData;
using aitbc::SnapshotOptions;

struct Session {
  std::mutex mu;
  NvmlLibrary lib;
  bool initialized = false;
  int environments = 0;  // Node environments that loaded the addon
};

Session& session() {
  // Leaked on purpose: the cleanup hook shuts NVML down; destructors at exit must not race it.
  static Session* s = new Session();
  return *s;
}

void shutdownLocked(Session& s) {
  if (s.initialized && s.lib.api().shutdown != nullptr) s.lib.api().shutdown();
  s.initialized = false;
  s.lib.close();
}

Napi::Error nvmlError(Napi::Env env, int code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::Number::New(env, code));
  err.Set("name", Napi::String::New(env, "NvmlError"));
  return err;
}

template <typename T>
Napi::Value optNum(Napi::Env env, const aitbc::Opt<T>& v) {
  return v ? Napi::Number::New(env, static_cast<double>(*v)) : env.Null();
}

Napi::Value optStr(Napi::Env env, const aitbc::Opt<std::string>& v) {
  return v ? Napi::String::New(env, *v) : env.Null();
}

Napi::Value optBool(Napi::Env env, const aitbc::Opt<bool>& v) {
  return v ? Napi::Boolean::New(env, *v) : env.Null();
}

Napi::Object toJs(Napi::Env env, const SnapshotData& s) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("driverVersion", optStr(env, s.driverVersion));
  out.Set("nvmlVersion", optStr(env, s.nvmlVersion));
  out.Set("cudaDriverVersion", optNum(env, s.cudaDriverVersion));
  Napi::Array devices = Napi::Array::New(env, s.devices.size());
  for (size_t i = 0; i < s.devices.size(); ++i) {
    const aitbc::DeviceData& d = s.devices[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("index", Napi::Number::New(env, d.index));
    if (d.errorCode) {
      Napi::Object e = Napi::Object::New(env);
      e.Set("code", Napi::Number::New(env, *d.errorCode));
      e.Set("message", Napi::String::New(env, d.errorText));
      o.Set("error", e);
      o.Set("name", optStr(env, d.name));
      o.Set("uuid", optStr(env, d.uuid));
      devices.Set(static_cast<uint32_t>(i), o);
      continue;
    }
    o.Set("error", env.Null());
    o.Set("name", optStr(env, d.name));
    o.Set("uuid", optStr(env, d.uuid));
    o.Set("pciBusId", optStr(env, d.pciBusId));
    o.Set("memoryTotalBytes", optNum(env, d.memTotal));
    o.Set("memoryUsedBytes", optNum(env, d.memUsed));
    o.Set("memoryFreeBytes", optNum(env, d.memFree));
    o.Set("memoryReservedBytes", optNum(env, d.memReserved));
    o.Set("utilizationGpuPct", optNum(env, d.utilGpu));
    o.Set("utilizationMemoryPct", optNum(env, d.utilMem));
    o.Set("temperatureC", optNum(env, d.temperature));
    o.Set("powerDrawMw", optNum(env, d.powerDrawMw));
    o.Set("powerLimitMw", optNum(env, d.powerLimitMw));
    o.Set("powerEnforcedLimitMw", optNum(env, d.powerEnforcedMw));
    o.Set("totalEnergyMj", optNum(env, d.energyMj));
    o.Set("smClockMHz", optNum(env, d.smClock));
    o.Set("memClockMHz", optNum(env, d.memClock));
    o.Set("smClockMaxMHz", optNum(env, d.smClockMax));
    o.Set("memClockMaxMHz", optNum(env, d.memClockMax));
    o.Set("fanSpeedPct", optNum(env, d.fan));
    o.Set("pstate", optNum(env, d.pstate));
    o.Set("clockEventReasons", optNum(env, d.clockEventReasons));
    o.Set("eccModeCurrent", optBool(env, d.eccCurrent));
    o.Set("eccModePending", optBool(env, d.eccPending));
    o.Set("eccUncorrectedVolatile", optNum(env, d.eccUncorrectedVolatile));
    o.Set("pcieLinkGen", optNum(env, d.pcieGen));
    o.Set("pcieLinkWidth", optNum(env, d.pcieWidth));
    o.Set("pcieLinkGenMax", optNum(env, d.pcieGenMax));
    o.Set("pcieLinkWidthMax", optNum(env, d.pcieWidthMax));
    o.Set("pcieTxKBs", optNum(env, d.pcieTxKBs));
    o.Set("pcieRxKBs", optNum(env, d.pcieRxKBs));
    if (d.ccMajor && d.ccMinor) {
      Napi::Object cc = Napi::Object::New(env);
      cc.Set("major", Napi::Number::New(env, *d.ccMajor));
      cc.Set("minor", Napi::Number::New(env, *d.ccMinor));
      o.Set("computeCapability", cc);
    } else {
      o.Set("computeCapability", env.Null());
    }
    if (d.processes) {
      Napi::Array procs = Napi::Array::New(env, d.processes->size());
      for (size_t j = 0; j < d.processes->size(); ++j) {
        const aitbc::ProcessData& p = (*d.processes)[j];
        Napi::Object po = Napi::Object::New(env);
        po.Set("pid", Napi::Number::New(env, p.pid));
        po.Set("usedMemoryBytes", optNum(env, p.usedMemoryBytes));
        procs.Set(static_cast<uint32_t>(j), po);
      }
      o.Set("processes", procs);
    } else {
      o.Set("processes", env.Null());
    }
    devices.Set(static_cast<uint32_t>(i), o);
  }
  out.Set("devices", devices);
  return out;
}


// Packed form: every numeric field of every device in one Float64Array (NaN = null), strings in
// one array. Building ~40 properties per device through N-API costs ~10 µs per device; this
// costs well under 1 µs, and src/gpu/packed.ts turns it into objects in JS.
constexpr size_t kPackedFields = 32;

Napi::Object toPacked(Napi::Env env, const SnapshotData& s) {
  const double nan = std::nan("");
  size_t procTotal = 0;
  for (const auto& d : s.devices) procTotal += d.processes ? d.processes->size() : 0;
  Napi::Float64Array nums = Napi::Float64Array::New(env, s.devices.size() * kPackedFields);
  Napi::Float64Array procs = Napi::Float64Array::New(env, procTotal * 2);
  Napi::Array strings = Napi::Array::New(env, s.devices.size() * 4);
  double* n = nums.Data();
  double* p = procs.Data();
  size_t procAt = 0;
  auto put = [&](const auto& v) { *n++ = v ? static_cast<double>(*v) : nan; };
  auto str = [&](uint32_t at, const aitbc::Opt<std::string>& v) {
    strings.Set(at, v ? Napi::Value(Napi::String::New(env, *v)) : env.Null());
  };
  for (size_t i = 0; i < s.devices.size(); ++i) {
    const aitbc::DeviceData& d = s.devices[i];
    const uint32_t base = static_cast<uint32_t>(i * 4);
    str(base, d.name);
    str(base + 1, d.uuid);
    str(base + 2, d.pciBusId);
    strings.Set(base + 3, d.errorCode ? Napi::Value(Napi::String::New(env, d.errorText)) : env.Null());
    put(d.memTotal); put(d.memUsed); put(d.memFree); put(d.memReserved);
    put(d.utilGpu); put(d.utilMem); put(d.temperature);
    put(d.powerDrawMw); put(d.powerLimitMw); put(d.powerEnforcedMw); put(d.energyMj);
    put(d.smClock); put(d.memClock); put(d.smClockMax); put(d.memClockMax);
    put(d.fan); put(d.pstate); put(d.clockEventReasons);
    put(d.eccCurrent); put(d.eccPending); put(d.eccUncorrectedVolatile);
    put(d.pcieGen); put(d.pcieWidth); put(d.pcieGenMax); put(d.pcieWidthMax); put(d.pcieTxKBs); put(d.pcieRxKBs);
    put(d.ccMajor); put(d.ccMinor); put(d.errorCode);
    if (d.processes) {
      *n++ = static_cast<double>(procAt);
      *n++ = static_cast<double>(d.processes->size());
      for (const auto& pr : *d.processes) {
        *p++ = pr.pid;
        *p++ = pr.usedMemoryBytes ? *pr.usedMemoryBytes : nan;
      }
      procAt += d.processes->size();
    } else {
      *n++ = nan;
      *n++ = nan;
    }
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("driverVersion", optStr(env, s.driverVersion));
  out.Set("nvmlVersion", optStr(env, s.nvmlVersion));
  out.Set("cudaDriverVersion", optNum(env, s.cudaDriverVersion));
  out.Set("count", Napi::Number::New(env, static_cast<double>(s.devices.size())));
  out.Set("numbers", nums);
  out.Set("strings", strings);
  out.Set("processes", procs);
  return out;
}

SnapshotOptions parseSnapshotOptions(const Napi::CallbackInfo& info) {
  SnapshotOptions o;
  if (info.Length() > 0 && info[0].IsObject()) {
    Napi::Object obj = info[0].As<Napi::Object>();
    Napi::Value pt = obj.Get("pcieThroughput");
    if (pt.IsBoolean()) o.pcieThroughput = pt.As<Napi::Boolean>().Value();
    Napi::Value pr = obj.Get("processes");
    if (pr.IsBoolean()) o.processes = pr.As<Napi::Boolean>().Value();
  }
  return o;
}

// Collects under the session lock; NvmlFailure for "not open" and whole-snapshot errors.
SnapshotData collectLocked(const SnapshotOptions& opts) {
  Session& s = session();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.initialized) throw NvmlFailure{NVML_ERROR_UNINITIALIZED, "NVML is not open: call open() first"};
  return aitbc::collectSnapshot(s.lib, opts);
}

class OpenWorker : public Napi::AsyncWorker {
 public:
  OpenWorker(Napi::Env env, std::string path)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), path_(std::move(path)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    Session& s = session();
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.initialized && s.lib.path() == path_) {
      ok_ = true;
    } else {
      shutdownLocked(s);
      std::string err;
      if (!s.lib.open(path_, err)) {
        reason_ = err;
        return;
      }
      int rc = s.lib.api().init();
      if (rc != NVML_SUCCESS) {
        code_ = rc;
        reason_ = "nvmlInit failed: " + s.lib.errorString(rc) + " (NVML code " + std::to_string(rc) + ")";
        s.lib.close();
        return;
      }
      s.initialized = true;
      ok_ = true;
    }
    resolved_ = s.lib.resolved();
    missing_ = s.lib.missing();
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object r = Napi::Object::New(env);
    r.Set("available", Napi::Boolean::New(env, ok_));
    r.Set("library", Napi::String::New(env, path_));
    if (ok_) {
      Napi::Array res = Napi::Array::New(env, resolved_.size());
      for (size_t i = 0; i < resolved_.size(); ++i) res.Set(static_cast<uint32_t>(i), resolved_[i]);
      Napi::Array mis = Napi::Array::New(env, missing_.size());
      for (size_t i = 0; i < missing_.size(); ++i) mis.Set(static_cast<uint32_t>(i), missing_[i]);
      r.Set("resolvedSymbols", res);
      r.Set("missingSymbols", mis);
    } else {
      r.Set("reason", Napi::String::New(env, reason_));
      r.Set("code", code_ >= 0 ? Napi::Number::New(env, code_) : env.Null());
    }
    deferred_.Resolve(r);
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::string path_;
  bool ok_ = false;
  int code_ = -1;
  std::string reason_;
  std::vector<std::string> resolved_, missing_;
};

class SnapshotWorker : public Napi::AsyncWorker {
 public:
  SnapshotWorker(Napi::Env env, SnapshotOptions opts, bool packed)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), opts_(opts), packed_(packed) {}
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      data_ = collectLocked(opts_);
    } catch (const NvmlFailure& f) {
      code_ = f.code;
      SetError(f.message);
    }
  }
  void OnOK() override { deferred_.Resolve(packed_ ? toPacked(Env(), data_) : toJs(Env(), data_)); }
  void OnError(const Napi::Error& e) override {
    deferred_.Reject(nvmlError(Env(), code_, e.Message()).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  SnapshotOptions opts_;
  bool packed_;
  SnapshotData data_;
  int code_ = NVML_ERROR_UNKNOWN;
};

Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  if (info.Length() > 0 && info[0].IsObject()) {
    Napi::Value lib = info[0].As<Napi::Object>().Get("library");
    if (lib.IsString()) path = lib.As<Napi::String>().Utf8Value();
  }
  if (path.empty()) {
    const char* envPath = std::getenv("AITBC_NVML_LIBRARY");
    path = envPath != nullptr && *envPath != '\0' ? envPath : "libnvidia-ml.so.1";
  }
  auto* w = new OpenWorker(env, path);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Value Snapshot(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    return toJs(env, collectLocked(parseSnapshotOptions(info)));
  } catch (const NvmlFailure& f) {
    throw nvmlError(env, f.code, f.message);
  }
}

Napi::Value SnapshotPacked(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    return toPacked(env, collectLocked(parseSnapshotOptions(info)));
  } catch (const NvmlFailure& f) {
    throw nvmlError(env, f.code, f.message);
  }
}

Napi::Value SnapshotPackedAsync(const Napi::CallbackInfo& info) {
  auto* w = new SnapshotWorker(info.Env(), parseSnapshotOptions(info), true);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Value SnapshotAsync(const Napi::CallbackInfo& info) {
  auto* w = new SnapshotWorker(info.Env(), parseSnapshotOptions(info), false);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  Session& s = session();
  std::lock_guard<std::mutex> lock(s.mu);
  shutdownLocked(s);
  return info.Env().Undefined();
}

Napi::Value IsOpen(const Napi::CallbackInfo& info) {
  Session& s = session();
  std::lock_guard<std::mutex> lock(s.mu);
  return Napi::Boolean::New(info.Env(), s.initialized);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("snapshot", Napi::Function::New(env, Snapshot, "snapshot"));
  exports.Set("snapshotAsync", Napi::Function::New(env, SnapshotAsync, "snapshotAsync"));
  exports.Set("snapshotPacked", Napi::Function::New(env, SnapshotPacked, "snapshotPacked"));
  exports.Set("snapshotPackedAsync", Napi::Function::New(env, SnapshotPackedAsync, "snapshotPackedAsync"));
  exports.Set("packedFieldCount", Napi::Number::New(env, static_cast<double>(kPackedFields)));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("isOpen", Napi::Function::New(env, IsOpen, "isOpen"));
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  // The NVML session is per process, but each environment (main thread, every worker that loads
  // the addon) registers a hook: only the last one to go away shuts NVML down.
  {
    Session& s = session();
    std::lock_guard<std::mutex> lock(s.mu);
    s.environments++;
  }
  env.AddCleanupHook([]() {
    Session& s = session();
    std::lock_guard<std::mutex> lock(s.mu);
    if (--s.environments == 0) shutdownLocked(s);
  });
  return exports;
}

}  // namespace

NODE_API_MODULE(aitbc_nvml, Init)
