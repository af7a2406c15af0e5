// N-API glue: open (async: dlopen + nvmlInit off the JS thread), packed snapshot (sync and async),
// close. One NVML session per process, guarded by a mutex; binding.d.ts types this surface. Every
// call and worker turns C++ exceptions into JS errors (js_errors.h).
#include <napi.h>

#include <limits>
#include <mutex>
#include <unordered_map>

#include "health_events.h"
#include "host_calls.h"
#include "js_errors.h"
#include "snapshot.h"

namespace {

using aitbc::DeviceData;
using aitbc::guarded;
using aitbc::NvmlFailure;
using aitbc::NvmlLibrary;
using aitbc::SnapshotData;
using aitbc::SnapshotOptions;

// The one reference count of the NVML session: open() calls not yet closed, per Node environment
// (main thread, each worker). NVML is shut down only when no environment holds it, so a worker's
// teardown returns just its own holds.
struct Session {
  std::mutex mu;
  NvmlLibrary lib;
  // What snapshots learned about slow and unsupported fields; forgotten when NVML closes.
  aitbc::FieldMemo memo;
  bool initialized = false;  // == !holds.empty()
  std::unordered_map<napi_env, int> holds;
};

Session& session() {
  // Leaked on purpose: cleanup hooks shut NVML down; destructors at exit must not race them.
  static Session* s = new Session();
  return *s;
}

void shutdownLocked(Session& s) {
  if (s.initialized && s.lib.api().shutdown != nullptr) s.lib.api().shutdown();
  s.initialized = false;
  s.holds.clear();
  s.lib.close();
  s.memo.clear();
}

// Returns `count` holds of `env` (all of them when count < 0); the last one out shuts NVML down.
void releaseLocked(Session& s, napi_env env, int count) {
  auto it = s.holds.find(env);
  if (it == s.holds.end()) return;
  if (count < 0 || (it->second -= count) <= 0) s.holds.erase(it);
  if (s.holds.empty()) shutdownLocked(s);
}

template <typename T>
Napi::Value optNum(Napi::Env env, const aitbc::Opt<T>& v) {
  return v ? Napi::Number::New(env, static_cast<double>(*v)) : env.Null();
}

Napi::Value optStr(Napi::Env env, const aitbc::Opt<std::string>& v) {
  return v ? Napi::String::New(env, *v) : env.Null();
}

// Packed form: every number of every device in one Float64Array (NaN = null), strings in one
// array. Building ~40 properties per device through N-API costs ~10 µs per device; this costs well
// under 1 µs, and src/gpu/packed.ts turns it into objects in JS.
//
// The layout is these two tables and nothing else: a row's position is its offset within a
// device's slice, and its name is exported (packedFields / packedStrings), so the decoder finds
// every value by name and a field one side lacks fails at load instead of reading a neighbour.
constexpr double kNull = std::numeric_limits<double>::quiet_NaN();

template <typename T>
double num(const aitbc::Opt<T>& v) {
  return v ? static_cast<double>(*v) : kNull;
}

const std::string* text(const aitbc::Opt<std::string>& v) { return v ? &*v : nullptr; }

struct PackedNumber {
  const char* name;
  double (*get)(const DeviceData&);
};

struct PackedString {
  const char* name;
  const std::string* (*get)(const DeviceData&);
};

// Every fact under its one name (snapshot.h), flags as 1/0; then the rows the decoder assembles.
#define AITBC_PACKED_ROW(n) {#n, [](const DeviceData& d) { return num(d.n); }},
constexpr PackedNumber kPackedNumbers[] = {
    AITBC_NVML_NUMBERS(AITBC_PACKED_ROW) AITBC_NVML_FLAGS(AITBC_PACKED_ROW)
    // computeCapability {major, minor} in JS.
    AITBC_PACKED_ROW(computeCapabilityMajor) AITBC_PACKED_ROW(computeCapabilityMinor)
    // Set only on a device that could not be read; its other numbers are then null.
    AITBC_PACKED_ROW(errorCode)
    // This device's (pid, usedMemoryBytes) pairs follow the previous devices' in `processes`.
    {"processCount",
     [](const DeviceData& d) { return d.processes ? static_cast<double>(d.processes->size()) : kNull; }},
};
#undef AITBC_PACKED_ROW

constexpr PackedString kPackedStrings[] = {
    {"name", [](const DeviceData& d) { return text(d.name); }},
    {"uuid", [](const DeviceData& d) { return text(d.uuid); }},
    {"pciBusId", [](const DeviceData& d) { return text(d.pciBusId); }},
    {"errorMessage",
     [](const DeviceData& d) -> const std::string* { return d.errorCode ? &d.errorText : nullptr; }},
};

constexpr bool sameName(const char* a, const char* b) {
  return *a == *b && (*a == '\0' || sameName(a + 1, b + 1));
}

template <typename Row, size_t N>
constexpr bool uniqueNames(const Row (&rows)[N]) {
  for (size_t i = 0; i < N; ++i)
    for (size_t j = i + 1; j < N; ++j)
      if (sameName(rows[i].name, rows[j].name)) return false;
  return true;
}

// The decoder looks names up: a duplicate would silently hide the second value.
static_assert(uniqueNames(kPackedNumbers), "packed field names must be unique");
static_assert(uniqueNames(kPackedStrings), "packed string names must be unique");

constexpr size_t kNumbersPerDevice = sizeof(kPackedNumbers) / sizeof(kPackedNumbers[0]);
constexpr size_t kStringsPerDevice = sizeof(kPackedStrings) / sizeof(kPackedStrings[0]);

template <typename Row, size_t N>
Napi::Array names(Napi::Env env, const Row (&rows)[N]) {
  Napi::Array out = Napi::Array::New(env, N);
  for (size_t i = 0; i < N; ++i) out.Set(static_cast<uint32_t>(i), rows[i].name);
  return out;
}

Napi::Object toPacked(Napi::Env env, const SnapshotData& s) {
  size_t procTotal = 0;
  for (const auto& d : s.devices) procTotal += d.processes ? d.processes->size() : 0;
  Napi::Float64Array nums = Napi::Float64Array::New(env, s.devices.size() * kNumbersPerDevice);
  Napi::Float64Array procs = Napi::Float64Array::New(env, procTotal * 2);
  Napi::Array strings = Napi::Array::New(env, s.devices.size() * kStringsPerDevice);
  double* n = nums.Data();
  double* p = procs.Data();
  uint32_t at = 0;
  for (const DeviceData& d : s.devices) {
    for (const PackedNumber& f : kPackedNumbers) *n++ = f.get(d);
    for (const PackedString& f : kPackedStrings) {
      const std::string* v = f.get(d);
      strings.Set(at++, v != nullptr ? Napi::Value(Napi::String::New(env, *v)) : env.Null());
    }
    if (!d.processes) continue;
    for (const auto& pr : *d.processes) {
      *p++ = pr.pid;
      *p++ = num(pr.usedMemoryBytes);
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
  if (!s.initialized) throw NvmlFailure(NVML_ERROR_UNINITIALIZED, "NVML is not open: call open() first");
  return aitbc::collectSnapshot(s.lib, opts, s.memo);
}

class OpenWorker : public aitbc::PromiseWorker {
 public:
  OpenWorker(Napi::Env env, std::string path)
      : PromiseWorker(env, "aitbc:nvmlOpen"), env_(env), path_(std::move(path)) {}

 protected:
  void Run() override {
    Session& s = session();
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.initialized && s.lib.path() != path_) {
      // Switching under other holders would change their library behind their back.
      reason_ = "NVML is already open in this process with " + s.lib.path() + "; close it first";
      return;
    }
    if (!s.initialized) {
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
    }
    // Copied before the hold is taken: a throw here leaves no hold behind.
    resolved_ = s.lib.resolved();
    missing_ = s.lib.missing();
    s.holds[env_]++;
    ok_ = true;
  }

  Napi::Value Settle(Napi::Env env) override {
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
    return r;
  }

 private:
  napi_env env_;  // only a key into Session::holds, never used from this thread
  std::string path_;
  bool ok_ = false;
  int code_ = -1;
  std::string reason_;
  std::vector<std::string> resolved_, missing_;
};

class SnapshotWorker : public aitbc::PromiseWorker {
 public:
  SnapshotWorker(Napi::Env env, SnapshotOptions opts) : PromiseWorker(env, "aitbc:nvmlSnapshot"), opts_(opts) {}

 protected:
  void Run() override { data_ = collectLocked(opts_); }
  Napi::Value Settle(Napi::Env env) override { return toPacked(env, data_); }

 private:
  SnapshotOptions opts_;
  SnapshotData data_;
};

// The path is required: which library to load (and its default) is decided in src/gpu/.
Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString() || info[0].As<Napi::String>().Utf8Value().empty()) {
    throw Napi::TypeError::New(env, "open(library): library must be a non-empty path string");
  }
  return guarded(env, [&] {
    auto* w = new OpenWorker(env, info[0].As<Napi::String>().Utf8Value());
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
  });
}

Napi::Value SnapshotPacked(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&] { return toPacked(env, collectLocked(parseSnapshotOptions(info))); });
}

Napi::Value SnapshotPackedAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&] {
    auto* w = new SnapshotWorker(env, parseSnapshotOptions(info));
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
  });
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    Session& s = session();
    std::lock_guard<std::mutex> lock(s.mu);
    releaseLocked(s, info.Env(), 1);
    return info.Env().Undefined();
  });
}

Napi::Value IsOpen(const Napi::CallbackInfo& info) {
  Session& s = session();
  std::lock_guard<std::mutex> lock(s.mu);
  return Napi::Boolean::New(info.Env(), s.initialized);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("snapshotPacked", Napi::Function::New(env, SnapshotPacked, "snapshotPacked"));
  exports.Set("snapshotPackedAsync", Napi::Function::New(env, SnapshotPackedAsync, "snapshotPackedAsync"));
  exports.Set("packedFields", names(env, kPackedNumbers));
  exports.Set("packedStrings", names(env, kPackedStrings));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("isOpen", Napi::Function::New(env, IsOpen, "isOpen"));
  aitbc::registerHostCalls(env, exports);
  exports.Set("abiVersion", Napi::Number::New(env, 2));
  // An environment going away (a worker exiting, the main thread at exit) returns the holds it
  // still has; the others' session stays open.
  napi_env key = env;
  env.AddCleanupHook([key]() {
    Session& s = session();
    std::lock_guard<std::mutex> lock(s.mu);
    releaseLocked(s, key, -1);
  });
  aitbc::registerHealthEvents(env, exports);
  return exports;
}

}  // namespace

namespace aitbc {

const NvmlLibrary* holdSession(napi_env env) {
  Session& s = session();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.initialized) return nullptr;
  s.holds[env]++;
  return &s.lib;
}

void releaseSession(napi_env env) {
  Session& s = session();
  std::lock_guard<std::mutex> lock(s.mu);
  releaseLocked(s, env, 1);
}

}  // namespace aitbc

NODE_API_MODULE(aitbc_nvml, Init)
