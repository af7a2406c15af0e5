#!/usr/bin/env bash
# GPU acceptance (docs/gpu-acceptance.md): compare the addon's telemetry with nvidia-smi, time
# both, run doctor (and demo/bench when node-llama-cpp is installed); write REPORT_DIR/gpu-acceptance.json.
# Exit 0 when every mandatory check passes, 1 otherwise. Needs `node` on PATH and a built package
# (dist/ and the addon). The whole run is bounded so it never hangs a device session.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
report_dir=${1:-.}
limit=${AITBC_ACCEPT_TIMEOUT:-450} # seconds; under the 8 minute budget
mkdir -p "$report_dir"
report="$(cd "$report_dir" && pwd)/gpu-acceptance.json"
rc=0
timeout -k 10 "$limit" node "$root/scripts/gpu-acceptance.mjs" --out "$report" || rc=$?
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  # Killed: still leave one report so the caller sees why.
  printf '{"schema":"aitbc-gpu-acceptance/1","ok":false,"failed":["timeout"],"checks":[{"name":"timeout","ok":false,"mandatory":true,"details":"gpu-acceptance.mjs ran past %s s","expected":null,"actual":null}]}\n' "$limit" >"$report"
  echo "gpu acceptance: FAILED (timed out after ${limit} s) → $report" >&2
  exit 1
fi
[ -s "$report" ] || { echo "gpu acceptance: no report written (exit $rc)" >&2; exit 1; }
[ "$rc" -eq 0 ] || exit 1
