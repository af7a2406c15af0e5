// N-API glue for library_probe.h and state_lock.h: argument checks, a worker off the JS thread
// for the probe, plain objects back; exceptions become JS errors (js_errors.h). binding.d.ts types them.
#include "host_calls.h"

#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "js_errors.h"
#include "library_probe.h"
#include "state_lock.h"

namespace {

// Loading a large library (libcublas is ~100 MB) runs its constructors: off the JS thread.
class ProbeWorker : public aitbc::PromiseWorker {
 public:
  ProbeWorker(Napi::Env env, std::vector<std::string> names)
      : PromiseWorker(env, "aitbc:probeLibraries"), names_(std::move(names)) {}

 protected:
  void Run() override {
    for (const auto& n : names_) results_.push_back(aitbc::probeLibrary(n));
  }
  Napi::Value Settle(Napi::Env env) override {
    Napi::Array out = Napi::Array::New(env, results_.size());
    for (size_t i = 0; i < results_.size(); ++i) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", names_[i]);
      o.Set("found", Napi::Boolean::New(env, results_[i].found));
      o.Set("path", results_[i].path.empty() ? env.Null() : Napi::String::New(env, results_[i].path));
      o.Set("error", results_[i].found ? env.Null() : Napi::String::New(env, results_[i].error));
      out.Set(static_cast<uint32_t>(i), o);
    }
    return out;
  }

 private:
  std::vector<std::string> names_;
  std::vector<aitbc::LibraryProbe> results_;
};

Napi::Value ProbeLibraries(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray())
    throw Napi::TypeError::New(env, "probeLibraries(names): names must be an array of strings");
  Napi::Array arr = info[0].As<Napi::Array>();
  std::vector<std::string> names;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value v = arr.Get(i);
    if (!v.IsString() || v.As<Napi::String>().Utf8Value().empty())
      throw Napi::TypeError::New(env, "probeLibraries(names): each name must be a non-empty string");
    names.push_back(v.As<Napi::String>().Utf8Value());
  }
  return aitbc::guarded(env, [&] {
    auto* w = new ProbeWorker(env, std::move(names));
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
  });
}

// Synchronous: one non-blocking fcntl, taken once at start before anything else is written.
Napi::Value LockFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString() || info[0].As<Napi::String>().Utf8Value().empty())
    throw Napi::TypeError::New(env, "lockFile(path): path must be a non-empty string");
  aitbc::LockAttempt a =
      aitbc::guarded(env, [&] { return aitbc::lockExclusive(info[0].As<Napi::String>().Utf8Value()); });
  Napi::Object r = Napi::Object::New(env);
  r.Set("locked", Napi::Boolean::New(env, a.locked));
  r.Set("fd", a.locked ? Napi::Number::New(env, a.fd) : env.Null());
  r.Set("holderPid", a.holderPid > 0 ? Napi::Number::New(env, static_cast<double>(a.holderPid)) : env.Null());
  r.Set("error", a.error.empty() ? env.Null() : Napi::String::New(env, a.error));
  return r;
}

Napi::Value UnlockFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber())
    throw Napi::TypeError::New(env, "unlockFile(fd): fd must be a number");
  aitbc::unlock(info[0].As<Napi::Number>().Int32Value());
  return env.Undefined();
}

}  // namespace

namespace aitbc {

void registerHostCalls(Napi::Env env, Napi::Object exports) {
  exports.Set("probeLibraries", Napi::Function::New(env, ProbeLibraries, "probeLibraries"));
  exports.Set("lockFile", Napi::Function::New(env, LockFile, "lockFile"));
  exports.Set("unlockFile", Napi::Function::New(env, UnlockFile, "unlockFile"));
}

}  // namespace aitbc
