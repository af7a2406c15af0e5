#!/usr/bin/env bash
# Inference acceptance on a GPU host (docs/gpu-acceptance.md, "Inference on the GPU"): from the
# device bundle only (scripts/device-bundle.sh --inference), with no network, no Node and no npm:
# unpack Node and the package, build node-llama-cpp's CUDA backend for sm_90 (`gpu build`),
# generate the Llama-3.2-1B and Llama-3.1-8B shapes (Q4_0), measure, and write ONE JSON report,
# REPORT_DIR/gpu-inference-acceptance.json (schema aitbc-gpu-inference-acceptance/1), whatever
# happens: every step is bounded, and a step that fails or runs out of time is recorded as such.
#   bash BUNDLE/gpu-inference-acceptance.sh REPORT_DIR           on the GPU host (under 9 minutes)
#   bash BUNDLE/gpu-inference-acceptance.sh REPORT_DIR --cpu     the CPU rehearsal (gpu build --cpu,
#                                                                 the 1B shape only, fewer jobs)
# Exit 0 when the run itself worked (every step ran to its end), 1 otherwise: the figures and their
# targets are in the report, never in the exit code.
# Env: AITBC_BUNDLE (the bundle; default: this script's folder when it holds MANIFEST.json, else
#      .tmp/device-bundle-inference beside the repository's scripts/), AITBC_ACCEPT_WORK (where
#      Node, the package, the build tree and the models go; default: inference-work beside the
#      bundle, kept between runs so a second run resumes the build), AITBC_ACCEPT_TIMEOUT (seconds
#      for the whole run; default 525 on a GPU, 5400 for --cpu), AITBC_ACCEPT_NODE (a node binary
#      instead of the bundle's), AITBC_ACCEPT_PKG (a package folder instead of pkg.tar.xz), and the
#      worker's own (scripts/gpu-inference-acceptance.mjs).
set -uo pipefail
t_start=$(date +%s%N)
here=$(cd "$(dirname "$0")" && pwd)
report_dir=${1:-$PWD/gpu-inference-acceptance-report}
shift || true
mode=gpu
for a in "$@"; do
  case "$a" in
    --cpu) mode=cpu ;;
    *) echo "gpu-inference-acceptance: unknown argument $a (only --cpu)" >&2; exit 2 ;;
  esac
done
if [ -n "${AITBC_BUNDLE:-}" ]; then
  bundle=$AITBC_BUNDLE
elif [ -f "$here/MANIFEST.json" ]; then
  bundle=$here
else
  bundle=$(cd "$here/.." && pwd)/.tmp/device-bundle-inference
fi
work=${AITBC_ACCEPT_WORK:-$(dirname "$bundle")/inference-work}
# 525 s: with the kill's 10 s grace the run ends before 9 minutes.
if [ "$mode" = cpu ]; then limit=${AITBC_ACCEPT_TIMEOUT:-5400}; else limit=${AITBC_ACCEPT_TIMEOUT:-525}; fi
mkdir -p "$report_dir" "$work"
report_dir=$(cd "$report_dir" && pwd)
report="$report_dir/gpu-inference-acceptance.json"
steps="$report_dir/gpu-inference-acceptance.steps.jsonl"
log="$report_dir/gpu-inference-acceptance.log"
: >"$steps"
rm -f "$report"
deadline_ms=$(((t_start / 1000000) + limit * 1000))
now_ms() { echo $(($(date +%s%N) / 1000000)); }
left_s() { local l=$(((deadline_ms - $(now_ms)) / 1000)); [ "$l" -gt 1 ] && echo "$l" || echo 1; }
json_str() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | tr '\n\t\r' '   '; }
# One line per shell step: {"step","ok","ms","rc","details"}; the worker folds them into the report.
step() {
  local name=$1 limit_s=$2
  shift 2
  local t0 rc=0 out
  t0=$(now_ms)
  out=$(timeout -k 5 "$limit_s" "$@" 2>&1) || rc=$?
  printf '{"step":"%s","ok":%s,"ms":%d,"rc":%d,"details":"%s"}\n' "$name" \
    "$([ "$rc" -eq 0 ] && echo true || echo false)" "$(($(now_ms) - t0))" "$rc" \
    "$(json_str "$(printf '%s' "$out" | tail -c 1500)")" >>"$steps"
  printf '[%s] %s: rc %d\n%s\n' "$(date -u +%T)" "$name" "$rc" "$out" >>"$log"
  return "$rc"
}
# A report without the worker (no Node, or the worker died without one): the shell's steps, as is.
fallback_report() {
  local why=$1
  {
    printf '{"schema":"aitbc-gpu-inference-acceptance/1","mode":"%s","complete":false,"runOk":false,' "$mode"
    printf '"failure":"%s","durationMs":%d,"shellSteps":[' "$(json_str "$why")" "$(($(now_ms) - t_start / 1000000))"
    paste -sd, "$steps"
    printf ']}\n'
  } >"$report"
}

# xz, else Python's lzma (a host without xz reads the same format).
unxz() {
  if command -v xz >/dev/null; then
    xz -dc "$1"
  else
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"
  fi
}

export bundle work
export -f unxz
# 1. Node: the bundle's (xz, else gzip), unless one is given.
mkdir -p "$work/bin"
unpack_node() {
  if [ -f "$bundle/node.xz" ]; then
    unxz "$bundle/node.xz" >"$work/bin/node.part"
  elif [ -f "$bundle/node.gz" ]; then
    gzip -dc "$bundle/node.gz" >"$work/bin/node.part"
  else
    echo "no node.xz or node.gz in $bundle" >&2
    return 1
  fi
  chmod +x "$work/bin/node.part" && mv "$work/bin/node.part" "$work/bin/node" && "$work/bin/node" --version
}
export -f unpack_node
if [ -n "${AITBC_ACCEPT_NODE:-}" ]; then
  ln -sf "$AITBC_ACCEPT_NODE" "$work/bin/node"
  printf '{"step":"unpack node","ok":true,"ms":0,"rc":0,"details":"given: %s"}\n' "$(json_str "$AITBC_ACCEPT_NODE")" >>"$steps"
elif ! step "unpack node" 120 bash -c unpack_node; then
  fallback_report "no Node: the bundle's node could not be unpacked (see shellSteps)"
  echo "gpu inference acceptance: FAILED (no node) → $report" >&2
  exit 1
fi
export PATH="$work/bin:$PATH"

# 2. The package, its llama.cpp source and the CPU prebuilt. Unpacked into pkg.new, then swapped
# in, keeping node-llama-cpp's localBuilds/ (a build tree from an earlier run resumes) and the
# source's timestamps (tar keeps them, so ninja recompiles nothing that did not change).
unpack_pkg() {
  set -o pipefail
  local nlc
  rm -rf "$work/pkg.new" "$work/pkg.old"
  mkdir -p "$work/pkg.new"
  unxz "$bundle/pkg.tar.xz" | tar -x -C "$work/pkg.new" --strip-components=1 || return 1
  nlc="$work/pkg.new/node_modules/node-llama-cpp"
  mkdir -p "$nlc/llama/llama.cpp" "$work/pkg.new/node_modules/@node-llama-cpp"
  unxz "$bundle/llama-src.tar.xz" | tar -x -C "$nlc/llama/llama.cpp" || return 1
  unxz "$bundle/cpu-prebuilt.tar.xz" | tar -x -C "$work/pkg.new/node_modules/@node-llama-cpp" || return 1
  if [ -d "$work/pkg/node_modules/node-llama-cpp/llama/localBuilds" ]; then
    mv "$work/pkg/node_modules/node-llama-cpp/llama/localBuilds" "$nlc/llama/localBuilds"
    [ ! -f "$work/pkg/node_modules/node-llama-cpp/llama/lastBuild.json" ] ||
      cp "$work/pkg/node_modules/node-llama-cpp/llama/lastBuild.json" "$nlc/llama/"
  fi
  cp "$bundle/MANIFEST.json" "$work/pkg.new/.bundle-manifest.json"
  [ ! -d "$work/pkg" ] || mv "$work/pkg" "$work/pkg.old"
  mv "$work/pkg.new" "$work/pkg"
  rm -rf "$work/pkg.old"
  echo "unpacked $(du -sh "$work/pkg" | cut -f1) into $work/pkg"
}
export -f unpack_pkg
if [ -n "${AITBC_ACCEPT_PKG:-}" ]; then
  pkg=$AITBC_ACCEPT_PKG
  printf '{"step":"unpack package","ok":true,"ms":0,"rc":0,"details":"given: %s"}\n' "$(json_str "$pkg")" >>"$steps"
elif [ -f "$work/pkg/.bundle-manifest.json" ] && cmp -s "$work/pkg/.bundle-manifest.json" "$bundle/MANIFEST.json"; then
  pkg=$work/pkg
  printf '{"step":"unpack package","ok":true,"ms":0,"rc":0,"details":"already unpacked from this bundle"}\n' >>"$steps"
else
  pkg=$work/pkg
  if ! step "unpack package" 180 bash -c unpack_pkg; then
    fallback_report "the package could not be unpacked (see shellSteps)"
    echo "gpu inference acceptance: FAILED (unpack) → $report" >&2
    exit 1
  fi
fi

# 3. The worker measures and writes the report after every step, so a kill leaves one behind.
args=(--out "$report" --work "$work" --steps "$steps" --deadline "$deadline_ms" --started "$((t_start / 1000000))")
[ "$mode" = cpu ] && args+=(--cpu)
echo "gpu inference acceptance ($mode): node $(node --version), package $pkg, work $work, $(left_s) s left; report → $report"
{
  rc=0
  timeout -k 10 "$(left_s)" node "$pkg/scripts/gpu-inference-acceptance.mjs" "${args[@]}" 2>&1 || rc=$?
  echo "$rc" >"$work/.worker-rc"
} | tee -a "$log"
rc=$(cat "$work/.worker-rc" 2>/dev/null || echo 1)
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  # Killed at the deadline: mark the last report it wrote (or write one) as cut short.
  node -e '
    const fs = require("node:fs");
    const [file, limit, steps] = process.argv.slice(1);
    let doc;
    try { doc = JSON.parse(fs.readFileSync(file, "utf8")); } catch { doc = { schema: "aitbc-gpu-inference-acceptance/1" }; }
    doc.complete = false;
    doc.runOk = false;
    doc.failure = `the worker ran past the ${limit} s limit and was killed; the figures above are what it had measured`;
    doc.timedOut = true;
    if (!doc.shellSteps) doc.shellSteps = fs.readFileSync(steps, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
    fs.writeFileSync(file, JSON.stringify(doc, null, 2) + "\n");
  ' "$report" "$limit" "$steps" 2>>"$log" || fallback_report "the worker ran past the $limit s limit"
  echo "gpu inference acceptance: cut short after $limit s → $report" >&2
  exit 1
fi
[ -s "$report" ] || fallback_report "the worker exited $rc without a report"
[ "$rc" -eq 0 ] || { echo "gpu inference acceptance: the run did not work through (exit $rc) → $report" >&2; exit 1; }
echo "gpu inference acceptance: done → $report"
