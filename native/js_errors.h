// How a C++ exception reaches JavaScript: an NvmlFailure as an NvmlError carrying the NVML code
// and text, anything else (std::bad_alloc, a bad value) as a NativeError with its what(). No
// exception may leave a call into the addon or a worker's Execute as a C++ exception: past the
// N-API boundary it would end the process.
#pragma once
#include <napi.h>

#include <exception>
#include <new>
#include <string>

#include "snapshot.h"

namespace aitbc {

// A caught exception, as plain data (an AsyncWorker carries it from Execute to OnError).
struct Failure {
  int code = -1;  // the NVML return code; -1: none
  std::string message;
};

// Classifies the exception being handled: call only inside a catch block.
inline Failure currentFailure() {
  try {
    throw;
  } catch (const NvmlFailure& f) {
    return Failure{f.code, f.what()};
  } catch (const std::bad_alloc&) {
    return Failure{-1, "aitbc_nvml: out of memory"};
  } catch (const std::exception& e) {
    return Failure{-1, std::string("aitbc_nvml: ") + e.what()};
  } catch (...) {
    return Failure{-1, "aitbc_nvml: unknown native exception"};
  }
}

inline Napi::Error nvmlError(Napi::Env env, int code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::Number::New(env, code));
  err.Set("name", Napi::String::New(env, "NvmlError"));
  return err;
}

inline Napi::Error toJsError(Napi::Env env, const Failure& f) {
  if (f.code >= 0) return nvmlError(env, f.code, f.message);
  Napi::Error err = Napi::Error::New(env, f.message);
  err.Set("code", env.Null());
  err.Set("name", Napi::String::New(env, "NativeError"));
  return err;
}

// Runs the body of a synchronous call: a JS error passes through, any other exception becomes one.
template <typename F>
auto guarded(Napi::Env env, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw toJsError(env, currentFailure());
  }
}

// An AsyncWorker whose Execute and OnOK cannot throw past N-API: Run() does the work off the JS
// thread, Settle() builds the result on it; either one's exception rejects the promise.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, const char* resourceName)
      : Napi::AsyncWorker(env, resourceName), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  virtual void Run() = 0;
  virtual Napi::Value Settle(Napi::Env env) = 0;

 private:
  void Execute() final {
    try {
      Run();
    } catch (...) {
      failure_ = currentFailure();
      SetError(failure_.message);
    }
  }
  void OnOK() final {
    Napi::Env env = Env();
    try {
      deferred_.Resolve(Settle(env));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (...) {
      deferred_.Reject(toJsError(env, currentFailure()).Value());
    }
  }
  void OnError(const Napi::Error&) final { deferred_.Reject(toJsError(Env(), failure_).Value()); }

  Napi::Promise::Deferred deferred_;
  Failure failure_;
};

}  // namespace aitbc
