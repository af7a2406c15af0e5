// NVML events on a thread of our own: nvmlEventSetWait blocks, so it never runs on the JS thread;
// each event crosses to JavaScript through a thread-safe function (queued, never blocking the
// thread either). One watcher per process, as there is one NVML session per process.
#include "health_events.h"

#include "js_errors.h"

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace aitbc {
namespace {

// Each wait returns after at most this long, so stopping (a flag the loop reads) joins quickly.
constexpr unsigned int kWaitMs = 100;
// Single-bit ECC is cheap to add and lets the policy see a burst; it never makes a card sick.
constexpr unsigned long long kWanted =
    nvmlEventTypeXidCriticalError | nvmlEventTypeDoubleBitEccError | nvmlEventTypeSingleBitEccError;

struct Registered {
  nvmlDevice_t handle;
  unsigned int index;
  std::string uuid;
};

struct EventRecord {
  int errorCode = 0;  // 0: an event; else the code of a failed wait
  std::string errorText;
  long long index = -1;  // -1: a device handle not registered here (or none)
  std::string uuid;
  unsigned long long type = 0, data = 0;
  double timestampMs = 0;
};

struct Watcher;
void callJs(Napi::Env env, Napi::Function fn, Watcher* w, EventRecord* rec);
using Tsfn = Napi::TypedThreadSafeFunction<Watcher, EventRecord, callJs>;

struct Watcher {
  napi_env env = nullptr;
  const NvmlLibrary* lib = nullptr;
  nvmlEventSet_t set = nullptr;
  std::vector<Registered> devices;
  std::atomic<bool> stop{false};
  std::thread thread;
  Tsfn tsfn;
  bool halted = false;  // thread joined, set freed, session hold returned (JS thread only)
};

std::mutex g_mu;
Watcher* g_current = nullptr;

// The watcher's session hold is its own, not its environment's: a close() too many from JS can
// then never shut NVML down under the waiting thread.
napi_env holdKey(Watcher* w) { return reinterpret_cast<napi_env>(w); }

double wallMs() {
  return static_cast<double>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

const char* typeName(unsigned long long type) {
  if (type & nvmlEventTypeXidCriticalError) return "xid";
  if (type & nvmlEventTypeDoubleBitEccError) return "double_bit_ecc";
  if (type & nvmlEventTypeSingleBitEccError) return "single_bit_ecc";
  return "other";
}

void sleepUnlessStopped(Watcher* w, unsigned int ms) {
  for (unsigned int slept = 0; slept < ms && !w->stop.load(); slept += 10)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

void run(Watcher* w) {
  const NvmlApi& a = w->lib->api();
  int lastError = 0;
  while (!w->stop.load()) {
    nvmlEventData_t data;
    std::memset(&data, 0, sizeof data);
    nvmlReturn_t rc = a.eventSetWait(w->set, &data, kWaitMs);
    if (rc == NVML_ERROR_TIMEOUT) continue;
    std::unique_ptr<EventRecord> rec(new EventRecord());
    rec->timestampMs = wallMs();
    if (rc == NVML_SUCCESS) {
      lastError = 0;
      rec->type = data.eventType;
      rec->data = data.eventData;
      for (const Registered& r : w->devices) {
        if (r.handle == data.device) {
          rec->index = r.index;
          rec->uuid = r.uuid;
          break;
        }
      }
    } else {
      // A failing wait (GPU lost, driver gone) returns at once: say so once per new code and pace
      // the retries like a timeout instead of spinning. Which GPU is lost the snapshot tells.
      if (rc != lastError) {
        rec->errorCode = rc;
        rec->errorText = w->lib->errorString(rc);
        lastError = rc;
      } else {
        rec.reset();
      }
      sleepUnlessStopped(w, kWaitMs);
    }
    // Closing (the environment is going away): the record is simply dropped.
    if (rec && w->tsfn.NonBlockingCall(rec.get()) == napi_ok) rec.release();
  }
}

void callJs(Napi::Env env, Napi::Function fn, Watcher*, EventRecord* raw) {
  std::unique_ptr<EventRecord> rec(raw);
  if (env == nullptr || fn.IsEmpty() || rec == nullptr) return;  // torn down: drop
  Napi::Object o = Napi::Object::New(env);
  o.Set("timestamp", Napi::Number::New(env, rec->timestampMs));
  if (rec->errorCode != 0) {
    o.Set("kind", "error");
    o.Set("code", Napi::Number::New(env, rec->errorCode));
    o.Set("message", rec->errorText);
  } else {
    const char* type = typeName(rec->type);
    o.Set("kind", "event");
    o.Set("index", rec->index >= 0 ? Napi::Value(Napi::Number::New(env, static_cast<double>(rec->index)))
                                   : env.Null());
    o.Set("uuid", rec->uuid.empty() ? env.Null() : Napi::Value(Napi::String::New(env, rec->uuid)));
    o.Set("type", type);
    o.Set("eventType", Napi::Number::New(env, static_cast<double>(rec->type)));
    o.Set("xid", std::strcmp(type, "xid") == 0 ? Napi::Value(Napi::Number::New(env, static_cast<double>(rec->data)))
                                                : env.Null());
    o.Set("data", Napi::Number::New(env, static_cast<double>(rec->data)));
  }
  try {
    fn.Call({o});
  } catch (const Napi::Error& e) {
    // The listener threw: surface it as any callback's uncaught exception would be.
    e.ThrowAsJavaScriptException();
  }
}

// Joins the thread, frees the set and returns the session hold; idempotent (JS thread only).
void halt(Watcher* w) {
  if (w->halted) return;
  w->halted = true;
  w->stop.store(true);
  if (w->thread.joinable()) w->thread.join();
  if (w->set != nullptr && w->lib->api().eventSetFree != nullptr) w->lib->api().eventSetFree(w->set);
  w->set = nullptr;
  releaseSession(holdKey(w));
}

void forget(Watcher* w) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_current == w) g_current = nullptr;
}

// The environment is going away with the watcher still running (process exit, worker exit).
void onTeardown(void* arg) {
  auto* w = static_cast<Watcher*>(arg);
  halt(w);
  forget(w);
}

// The thread-safe function is gone (after stopEvents' release, or at teardown): last owner.
void onFinalize(Napi::Env, void*, Watcher* w) {
  napi_remove_env_cleanup_hook(w->env, onTeardown, w);
  halt(w);
  forget(w);
  delete w;
}

Napi::Array typeNames(Napi::Env env, unsigned long long mask) {
  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  if (mask & nvmlEventTypeXidCriticalError) out.Set(n++, "xid");
  if (mask & nvmlEventTypeDoubleBitEccError) out.Set(n++, "double_bit_ecc");
  if (mask & nvmlEventTypeSingleBitEccError) out.Set(n++, "single_bit_ecc");
  return out;
}

// Registers every device it can; one status per device, never a throw for one device's trouble.
Napi::Array registerDevices(Napi::Env env, Watcher* w) {
  const NvmlApi& a = w->lib->api();
  unsigned int count = 0;
  nvmlReturn_t rc = a.deviceGetCount(&count);
  if (rc != NVML_SUCCESS) throw nvmlError(env, rc, "nvmlDeviceGetCount: " + w->lib->errorString(rc));
  Napi::Array out = Napi::Array::New(env, count);
  for (unsigned int i = 0; i < count; ++i) {
    Napi::Object d = Napi::Object::New(env);
    d.Set("index", Napi::Number::New(env, i));
    nvmlDevice_t dev = nullptr;
    std::string uuid;
    unsigned long long mask = 0;
    rc = a.deviceGetHandleByIndex(i, &dev);
    if (rc == NVML_SUCCESS && a.deviceGetUuid != nullptr) {
      char buf[96] = {};
      nvmlReturn_t u = a.deviceGetUuid(dev, buf, sizeof buf);
      if (u == NVML_SUCCESS) uuid.assign(buf, strnlen(buf, sizeof buf));
      else if (u == NVML_ERROR_GPU_IS_LOST) rc = u;
    }
    if (rc == NVML_SUCCESS) {
      mask = kWanted;
      if (a.deviceGetSupportedEventTypes != nullptr) {
        unsigned long long supported = 0;
        rc = a.deviceGetSupportedEventTypes(dev, &supported);
        if (rc == NVML_SUCCESS) mask &= supported;
      }
      if (rc == NVML_SUCCESS && mask == 0) rc = NVML_ERROR_NOT_SUPPORTED;
      if (rc == NVML_SUCCESS) rc = a.deviceRegisterEvents(dev, mask, w->set);
    }
    const char* status = rc == NVML_SUCCESS                   ? "registered"
                         : rc == NVML_ERROR_NOT_SUPPORTED     ? "unsupported"
                         : rc == NVML_ERROR_GPU_IS_LOST       ? "lost"
                                                              : "error";
    if (rc == NVML_SUCCESS) w->devices.push_back(Registered{dev, i, uuid});
    d.Set("uuid", uuid.empty() ? env.Null() : Napi::Value(Napi::String::New(env, uuid)));
    d.Set("status", status);
    d.Set("eventTypes", typeNames(env, rc == NVML_SUCCESS ? mask : 0));
    d.Set("code", rc == NVML_SUCCESS ? env.Null() : Napi::Value(Napi::Number::New(env, rc)));
    d.Set("message", rc == NVML_SUCCESS ? env.Null() : Napi::Value(Napi::String::New(env, w->lib->errorString(rc))));
    out.Set(i, d);
  }
  return out;
}

Napi::Value StartEvents(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsFunction())
    throw Napi::TypeError::New(env, "startEvents(onEvent): onEvent must be a function");
  {
    std::lock_guard<std::mutex> lock(g_mu);
    if (g_current != nullptr) throw Napi::Error::New(env, "NVML events are already watched in this process");
  }
  std::unique_ptr<Watcher> w(new Watcher());
  w->env = env;
  const NvmlLibrary* lib = holdSession(holdKey(w.get()));
  if (lib == nullptr) throw nvmlError(env, NVML_ERROR_UNINITIALIZED, "NVML is not open: call open() first");
  w->lib = lib;
  const NvmlApi& a = lib->api();
  Napi::Object result = Napi::Object::New(env);
  result.Set("waitCall", a.eventSetWaitName != nullptr ? Napi::Value(Napi::String::New(env, a.eventSetWaitName))
                                                       : env.Null());
  auto notRunning = [&](const std::string& reason, Napi::Value devices) {
    if (w->set != nullptr) a.eventSetFree(w->set);
    releaseSession(holdKey(w.get()));
    result.Set("running", false);
    result.Set("reason", reason);
    result.Set("devices", devices);
    return result;
  };
  if (a.eventSetCreate == nullptr || a.eventSetFree == nullptr || a.eventSetWait == nullptr ||
      a.deviceRegisterEvents == nullptr)
    return notRunning("this NVML library has no event calls (nvmlEventSetCreate/Wait/Free, nvmlDeviceRegisterEvents)",
                      Napi::Array::New(env));
  nvmlReturn_t rc = a.eventSetCreate(&w->set);
  if (rc != NVML_SUCCESS) {
    w->set = nullptr;
    return notRunning("nvmlEventSetCreate: " + lib->errorString(rc), Napi::Array::New(env));
  }
  Napi::Array devices;
  try {
    devices = registerDevices(env, w.get());
  } catch (...) {
    notRunning("", Napi::Array::New(env));
    throw;
  }
  if (w->devices.empty()) return notRunning("no GPU supports NVML events", devices);
  Watcher* raw = w.release();
  raw->tsfn = Tsfn::New(env, info[0].As<Napi::Function>(), "aitbc:nvmlEvents", 0, 1, raw, onFinalize,
                        static_cast<void*>(nullptr));
  // A watcher alone never keeps the process alive: it may exit while subscribed.
  raw->tsfn.Unref(env);
  napi_add_env_cleanup_hook(env, onTeardown, raw);
  {
    std::lock_guard<std::mutex> lock(g_mu);
    g_current = raw;
  }
  try {
    raw->thread = std::thread(run, raw);
  } catch (...) {
    // No thread (std::system_error): undo as stopEvents would, then say why.
    const Failure why = currentFailure();
    forget(raw);
    napi_remove_env_cleanup_hook(env, onTeardown, raw);
    halt(raw);
    raw->tsfn.Release();
    throw toJsError(env, why);
  }
  result.Set("running", true);
  result.Set("reason", env.Null());
  result.Set("devices", devices);
  return result;
}

Napi::Value StopEvents(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Watcher* w = nullptr;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    if (g_current == nullptr || g_current->env != static_cast<napi_env>(env)) return Napi::Boolean::New(env, false);
    w = g_current;
    g_current = nullptr;
  }
  napi_remove_env_cleanup_hook(env, onTeardown, w);
  halt(w);
  // The last thread reference: the function closes and onFinalize deletes the watcher.
  w->tsfn.Release();
  return Napi::Boolean::New(env, true);
}

Napi::Value EventsRunning(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(g_mu);
  return Napi::Boolean::New(info.Env(), g_current != nullptr && g_current->env == static_cast<napi_env>(info.Env()));
}

}  // namespace

void registerHealthEvents(Napi::Env env, Napi::Object exports) {
  exports.Set("startEvents", Napi::Function::New(env, StartEvents, "startEvents"));
  exports.Set("stopEvents", Napi::Function::New(env, StopEvents, "stopEvents"));
  exports.Set("eventsRunning", Napi::Function::New(env, EventsRunning, "eventsRunning"));
}

}  // namespace aitbc
