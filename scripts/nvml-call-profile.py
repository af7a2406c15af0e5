#!/usr/bin/env python3
# Time each NVML call the addon makes on device 0 (median of N runs; argv[1] = N), to find the
# calls a real driver makes slow. Python ctypes: runs on a GPU host that has no Node.
import ctypes, time, json, statistics, sys
n = ctypes.CDLL("libnvidia-ml.so.1")
assert n.nvmlInit_v2() == 0
h = ctypes.c_void_p()
assert n.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(h)) == 0
buf = ctypes.create_string_buffer(256)
u = ctypes.c_uint(); u2 = ctypes.c_uint(); ull = ctypes.c_ulonglong(); i1 = ctypes.c_int(); i2 = ctypes.c_int()
mem = (ctypes.c_ulonglong * 3)(); mem2 = (ctypes.c_byte * 48)()
ctypes.cast(mem2, ctypes.POINTER(ctypes.c_uint))[0] = 40 | (2 << 24)
util = (ctypes.c_uint * 2)(); pci = (ctypes.c_byte * 128)(); procs = (ctypes.c_byte * (24 * 64))()
calls = {
 "GetName": lambda: n.nvmlDeviceGetName(h, buf, 96),
 "GetUUID": lambda: n.nvmlDeviceGetUUID(h, buf, 96),
 "GetPciInfo_v3": lambda: n.nvmlDeviceGetPciInfo_v3(h, pci),
 "GetMemoryInfo": lambda: n.nvmlDeviceGetMemoryInfo(h, mem),
 "GetMemoryInfo_v2": lambda: n.nvmlDeviceGetMemoryInfo_v2(h, mem2),
 "GetUtilizationRates": lambda: n.nvmlDeviceGetUtilizationRates(h, util),
 "GetTemperature": lambda: n.nvmlDeviceGetTemperature(h, 0, ctypes.byref(u)),
 "GetPowerUsage": lambda: n.nvmlDeviceGetPowerUsage(h, ctypes.byref(u)),
 "GetPowerManagementLimit": lambda: n.nvmlDeviceGetPowerManagementLimit(h, ctypes.byref(u)),
 "GetEnforcedPowerLimit": lambda: n.nvmlDeviceGetEnforcedPowerLimit(h, ctypes.byref(u)),
 "GetTotalEnergyConsumption": lambda: n.nvmlDeviceGetTotalEnergyConsumption(h, ctypes.byref(ull)),
 "GetClockInfo(SM)": lambda: n.nvmlDeviceGetClockInfo(h, 1, ctypes.byref(u)),
 "GetClockInfo(MEM)": lambda: n.nvmlDeviceGetClockInfo(h, 2, ctypes.byref(u)),
 "GetMaxClockInfo(SM)": lambda: n.nvmlDeviceGetMaxClockInfo(h, 1, ctypes.byref(u)),
 "GetMaxClockInfo(MEM)": lambda: n.nvmlDeviceGetMaxClockInfo(h, 2, ctypes.byref(u)),
 "GetFanSpeed": lambda: n.nvmlDeviceGetFanSpeed(h, ctypes.byref(u)),
 "GetPerformanceState": lambda: n.nvmlDeviceGetPerformanceState(h, ctypes.byref(u)),
 "GetCurrentClocksEventReasons": lambda: n.nvmlDeviceGetCurrentClocksEventReasons(h, ctypes.byref(ull)),
 "GetEccMode": lambda: n.nvmlDeviceGetEccMode(h, ctypes.byref(u), ctypes.byref(u2)),
 "GetTotalEccErrors": lambda: n.nvmlDeviceGetTotalEccErrors(h, 1, 1, ctypes.byref(ull)),
 "GetCurrPcieLinkGeneration": lambda: n.nvmlDeviceGetCurrPcieLinkGeneration(h, ctypes.byref(u)),
 "GetCurrPcieLinkWidth": lambda: n.nvmlDeviceGetCurrPcieLinkWidth(h, ctypes.byref(u)),
 "GetMaxPcieLinkGeneration": lambda: n.nvmlDeviceGetMaxPcieLinkGeneration(h, ctypes.byref(u)),
 "GetMaxPcieLinkWidth": lambda: n.nvmlDeviceGetMaxPcieLinkWidth(h, ctypes.byref(u)),
 "GetCudaComputeCapability": lambda: n.nvmlDeviceGetCudaComputeCapability(h, ctypes.byref(i1), ctypes.byref(i2)),
 "GetComputeRunningProcesses_v3(count)": lambda: n.nvmlDeviceGetComputeRunningProcesses_v3(h, ctypes.byref(ctypes.c_uint(0)), None),
 "GetComputeRunningProcesses_v3(fill64)": lambda: n.nvmlDeviceGetComputeRunningProcesses_v3(h, ctypes.byref(ctypes.c_uint(64)), procs),
 "GetCount_v2": lambda: n.nvmlDeviceGetCount_v2(ctypes.byref(u)),
 "SystemGetDriverVersion": lambda: n.nvmlSystemGetDriverVersion(buf, 80),
 "SystemGetCudaDriverVersion_v2": lambda: n.nvmlSystemGetCudaDriverVersion_v2(ctypes.byref(i1)),
 "GetPcieThroughput(TX)": lambda: n.nvmlDeviceGetPcieThroughput(h, 0, ctypes.byref(u)),
}
out = {}
for name, f in calls.items():
    ts = []; rc = None
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 30):
        t = time.perf_counter(); rc = f(); ts.append((time.perf_counter() - t) * 1e6)
    out[name] = {"rc": rc, "median_us": round(statistics.median(ts), 1), "max_us": round(max(ts), 1)}
json.dump(out, sys.stdout, indent=1)
