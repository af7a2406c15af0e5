#!/usr/bin/env bash
# Device bundle (docs/gpu-acceptance.md): everything a GPU host without network or Node needs.
#   bash scripts/device-bundle.sh [OUT_DIR]                the NVML acceptance, under 48 MiB
#                                                          (default OUT_DIR .tmp/device-bundle):
#     node.xz (or node.gz)   the running Node binary, compressed
#     pkg/                   the packed package (npm pack) + its runtime dependencies, WITHOUT the
#                            inference runtime (node-llama-cpp, @node-llama-cpp/*)
#     run-acceptance.sh      on the device: bash OUT_DIR/run-acceptance.sh REPORT_DIR
#   bash scripts/device-bundle.sh --inference [OUT_DIR]    the inference acceptance, under 64 MiB
#                                                          (default OUT_DIR .tmp/device-bundle-inference):
#     node.xz                the running Node binary
#     pkg.tar.xz             the package + its runtime dependencies WITH node-llama-cpp, but without
#                            its prebuilt binaries, llama/gitRelease.bundle or any local build
#     llama-src.tar.xz       the llama.cpp source subset `gpu build` compiles (the git bundle's
#                            release, node-llama-cpp's patches applied), for
#                            node_modules/node-llama-cpp/llama/llama.cpp
#     cpu-prebuilt.tar.xz    @node-llama-cpp/linux-x64: the CPU binary the preflight child (and a
#                            CPU fallback) loads
#     gpu-inference-acceptance.sh   on the device: bash OUT_DIR/gpu-inference-acceptance.sh REPORT_DIR
#     MANIFEST.json          what each file is, its size and sha256 (schema aitbc-device-bundle/1)
# Needs a built tree (dist/, an addon in prebuilds/ or build/Release/) and npm with its cache or
# the registry; --inference also needs git and xz. Env: AITBC_BUNDLE_COMPRESS=xz|gzip (default xz
# when installed; --inference needs xz to fit), AITBC_BUNDLE_CACHE (where the compressed node, source
# and CPU binary are kept between runs; compressing takes minutes).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mode=acceptance
if [ "${1:-}" = "--inference" ]; then
  mode=inference
  shift
fi
if [ "$mode" = inference ]; then
  out=${1:-$root/.tmp/device-bundle-inference}
  limit_mib=64
else
  out=${1:-$root/.tmp/device-bundle}
  limit_mib=48
fi
limit_bytes=$((limit_mib * 1024 * 1024))
node_bin=$(node -p process.execPath)
node_version=$(node -p process.version)
compress=${AITBC_BUNDLE_COMPRESS:-$(command -v xz >/dev/null && echo xz || echo gzip)}
cache=${AITBC_BUNDLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aitbc-device-bundle}

[ -f "$root/dist/cli.js" ] || { echo "device-bundle: dist/ missing: run npm run build" >&2; exit 1; }
addon=""
for a in "$root/prebuilds/linux-x64/aitbc_nvml.node" "$root/build/Release/aitbc_nvml.node"; do
  [ -f "$a" ] && { addon=$a; break; }
done
[ -n "$addon" ] || { echo "device-bundle: no NVML addon: run npm run build:native" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$out"
mkdir -p "$out" "$cache"

# 1. Node, compressed once per version and binary (cached: xz -9 of ~95 MB takes a minute).
case "$compress" in
  xz) ext=xz; cmd=(xz -9 -c) ;;
  gzip) ext=gz; cmd=(gzip -9 -c) ;;
  *) echo "device-bundle: AITBC_BUNDLE_COMPRESS must be xz or gzip" >&2; exit 1 ;;
esac
key=$(cksum <"$node_bin" | cut -d' ' -f1)
cached="$cache/node-$node_version-$(uname -m)-$key.$ext"
if [ ! -s "$cached" ]; then
  "${cmd[@]}" "$node_bin" >"$cached.part.$$"
  mv "$cached.part.$$" "$cached"
fi
cp "$cached" "$out/node.$ext"

# 2. The package as npm would publish it. --ignore-scripts: `prepare` would rebuild the addon.
(cd "$root" && npm pack --silent --ignore-scripts --pack-destination "$work" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work"
pkg="$work/package"
# The addon is build output (git-ignored); ship the one this tree built.
mkdir -p "$pkg/prebuilds/linux-x64"
[ -f "$pkg/prebuilds/linux-x64/aitbc_nvml.node" ] || cp "$addon" "$pkg/prebuilds/linux-x64/aitbc_nvml.node"
# The acceptance times the addon with bench/nvml.mjs, which "files" does not publish; the
# inference acceptance runs its measurements from bench/ too.
mkdir -p "$pkg/bench"
cp "$root/bench/nvml.mjs" "$pkg/bench/"
if [ "$mode" = inference ]; then
  cp "$root/bench/lib.mjs" "$root/bench/inference-phases.mjs" "$root/bench/inference-report.mjs" "$pkg/bench/"
fi
# Sources, docs and build files are not needed to run; keep the bundle small.
rm -rf "$pkg/native" "$pkg/CMakeLists.txt"

# 3. Runtime dependencies at the versions of the repo's lock file. The NVML acceptance drops
# node-llama-cpp from the bundle's own package.json (so none of its ~100 transitive packages come
# along); the inference one keeps it, without the optional @node-llama-cpp/* binaries.
cp "$root/package-lock.json" "$pkg/"
node -e '
  const fs = require("node:fs");
  const [f, mode] = process.argv.slice(1);
  const p = JSON.parse(fs.readFileSync(f, "utf8"));
  if (mode !== "inference") delete p.dependencies["node-llama-cpp"];
  delete p.devDependencies;
  delete p.scripts;
  fs.writeFileSync(f, JSON.stringify(p, null, 2) + "\n");
' "$pkg/package.json" "$mode"
(cd "$pkg" && npm install --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund \
  --prefer-offline --loglevel=error >/dev/null)
rm -rf "$pkg/node_modules/@node-llama-cpp" "$pkg/package-lock.json"
if [ "$mode" = inference ]; then
  nlc="$pkg/node_modules/node-llama-cpp"
  [ -f "$nlc/package.json" ] || { echo "device-bundle: npm did not install node-llama-cpp" >&2; exit 1; }
  # No prebuilt binaries (the CPU one travels apart), no git bundle (34 MB: its source subset
  # travels apart), nothing a previous build left.
  rm -rf "$nlc/bins" "$nlc/llama/gitRelease.bundle" "$nlc/llama/llama.cpp" "$nlc/llama/localBuilds" \
    "$nlc/llama/lastBuild.json" "$nlc/llama/llama.cpp.info.json"
else
  rm -rf "$pkg/node_modules/node-llama-cpp"
fi
# Type declarations, TypeScript sources and source maps are never loaded at run time.
find "$pkg" \( -name '*.d.ts' -o -name '*.d.cts' -o -name '*.d.mts' -o -name '*.map' -o -name '*.ts' \) -type f -delete

# 4. (NVML acceptance) Can the CLI start without node-llama-cpp? If a static import still pulls it in, ship a
# stub that throws on use, and say so in BUNDLE.json (the acceptance report records it).
stub_note=null
if [ "$mode" = acceptance ] && ! err=$(cd "$pkg" && "$node_bin" bin/aitbc-native-miner.js --version 2>&1 >/dev/null); then
  if ! grep -q "node-llama-cpp" <<<"$err"; then
    echo "device-bundle: the CLI does not start: $err" >&2
    exit 1
  fi
  # Every name dist/ imports from node-llama-cpp, so ESM linking succeeds.
  names=$(grep -rhoz 'import {[^}]*} from "node-llama-cpp"' "$pkg/dist" | tr '\0' '\n' |
    sed -e 's/import {//' -e 's/} from.*//' | tr ',' '\n' | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' \
      -e 's/^type //' -e 's/ as .*//' | grep -v '^$' | sort -u)
  mkdir -p "$pkg/node_modules/node-llama-cpp"
  {
    echo '// Stub written by scripts/device-bundle.sh: the device bundle has no inference runtime.'
    echo 'const missing = (name) => function () { throw new Error(`node-llama-cpp is not installed (device bundle without the inference runtime): ${name}`); };'
    for n in $names; do echo "export const $n = missing(\"$n\");"; done
  } >"$pkg/node_modules/node-llama-cpp/index.js"
  printf '{"name":"node-llama-cpp","version":"0.0.0-aitbc-stub","type":"module","main":"index.js","aitbcStub":true}\n' \
    >"$pkg/node_modules/node-llama-cpp/package.json"
  stub_note='"the packed CLI did not start without node-llama-cpp: a module on the path of --version imports it statically (src/cli.ts loads commands lazily; keep it so). The bundle ships a stub node-llama-cpp that throws on use."'
  (cd "$pkg" && "$node_bin" bin/aitbc-native-miner.js --version >/dev/null)
fi
built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
inference_runtime=$([ "$mode" = inference ] && echo true || echo false)
printf '{"node":"%s","nodeArchive":"node.%s","builtAt":"%s","inferenceRuntime":%s,"nodeLlamaCppStub":%s}\n' \
  "$node_version" "$ext" "$built_at" "$inference_runtime" "$stub_note" >"$pkg/BUNDLE.json"

if [ "$mode" = inference ]; then
  [ "$compress" = xz ] || echo "device-bundle: warning: --inference without xz is unlikely to fit $limit_mib MiB" >&2
  src_nlc="$root/node_modules/node-llama-cpp"
  nlc_version=$(node -p "require('$src_nlc/package.json').version")
  release=$(node -p "require('$src_nlc/llama/binariesGithubRelease.json').release")
  # 5a. The llama.cpp source `gpu build` compiles: node-llama-cpp's git bundle cloned and patched
  # as its `source download` does (and `gpu build` when it has git), then only what a build
  # reads: 39 MB, about 4.6 MiB with xz -9. Cached per bundle file (compressing takes a minute).
  bundle_key=$(cksum <"$src_nlc/llama/gitRelease.bundle" | cut -d' ' -f1)
  src_cached="$cache/llama-src-$nlc_version-$release-$bundle_key.tar.$ext"
  if [ ! -s "$src_cached" ]; then
    git -c advice.detachedHead=false clone --quiet "$src_nlc/llama/gitRelease.bundle" "$work/llama.cpp"
    for patch in "$src_nlc"/llama/patches/*.diff; do
      [ -f "$patch" ] || continue
      git -C "$work/llama.cpp" apply --reverse --check "$patch" 2>/dev/null ||
        git -C "$work/llama.cpp" apply --ignore-whitespace "$patch"
    done
    parts=()
    for p in CMakeLists.txt cmake common ggml include src vendor tools/mtmd licenses LICENSE; do
      [ -e "$work/llama.cpp/$p" ] && parts+=("$p")
    done
    tar -C "$work/llama.cpp" -cf - "${parts[@]}" | "${cmd[@]}" >"$src_cached.part.$$"
    mv "$src_cached.part.$$" "$src_cached"
    rm -rf "$work/llama.cpp"
  fi
  cp "$src_cached" "$out/llama-src.tar.$ext"
  # 5b. The CPU prebuilt (@node-llama-cpp/linux-x64): the preflight child loads every model on
  # the CPU first (getLlama({ gpu: false })), and the runtime falls back to it.
  cpu_dir="$root/node_modules/@node-llama-cpp/linux-x64"
  [ -f "$cpu_dir/package.json" ] || { echo "device-bundle: $cpu_dir missing (npm install)" >&2; exit 1; }
  cpu_version=$(node -p "require('$cpu_dir/package.json').version")
  [ "$cpu_version" = "$nlc_version" ] ||
    { echo "device-bundle: @node-llama-cpp/linux-x64 $cpu_version is not node-llama-cpp $nlc_version" >&2; exit 1; }
  cpu_cached="$cache/cpu-prebuilt-linux-x64-$cpu_version.tar.$ext"
  if [ ! -s "$cpu_cached" ]; then
    tar -C "$root/node_modules/@node-llama-cpp" -cf - --exclude='*.d.ts' --exclude='*.map' linux-x64 |
      "${cmd[@]}" >"$cpu_cached.part.$$"
    mv "$cpu_cached.part.$$" "$cpu_cached"
  fi
  cp "$cpu_cached" "$out/cpu-prebuilt.tar.$ext"
  # 5c. The package, as one archive (its node_modules is thousands of small files).
  mv "$pkg" "$work/pkg"
  tar -C "$work" -cf - pkg | "${cmd[@]}" >"$out/pkg.tar.$ext"
  cp "$root/scripts/gpu-inference-acceptance.sh" "$out/"
  chmod +x "$out/gpu-inference-acceptance.sh"
  # 5d. What the run needs, for the script on the device (and the test) to check.
  node -e '
    const fs = require("node:fs");
    const { createHash } = require("node:crypto");
    const [out, ext, node, nlc, release, builtAt, limitMiB] = process.argv.slice(1);
    const roles = {
      [`node.${ext}`]: "the Node binary that runs everything",
      [`pkg.tar.${ext}`]: "the package: dist/ (incl. dist/backends/gguf), bin/, scripts/, bench/, the NVML addon, runtime dependencies with node-llama-cpp (no prebuilt binaries, no git bundle)",
      [`llama-src.tar.${ext}`]: "llama.cpp source subset for node_modules/node-llama-cpp/llama/llama.cpp (gpu build)",
      [`cpu-prebuilt.tar.${ext}`]: "@node-llama-cpp/linux-x64 for node_modules/@node-llama-cpp/ (preflight, CPU fallback)",
      "gpu-inference-acceptance.sh": "the device-side entry point",
    };
    const files = Object.entries(roles).map(([name, role]) => {
      const buf = fs.readFileSync(`${out}/${name}`);
      return { name, bytes: buf.length, sha256: createHash("sha256").update(buf).digest("hex"), role };
    });
    const doc = {
      schema: "aitbc-device-bundle/1",
      mode: "inference",
      builtAt,
      node,
      nodeLlamaCpp: nlc,
      llamaCppRelease: release,
      limitBytes: Number(limitMiB) * 1024 * 1024,
      totalBytes: files.reduce((n, f) => n + f.bytes, 0),
      files,
    };
    fs.writeFileSync(`${out}/MANIFEST.json`, JSON.stringify(doc, null, 2) + "\n");
  ' "$out" "$ext" "$node_version" "$nlc_version" "$release" "$built_at" "$limit_mib"
  size=$(du -sb "$out" | cut -f1)
  echo "device bundle (inference): $out ($((size / 1024 / 1024)) MiB of $limit_mib; node $node_version, node-llama-cpp $nlc_version, llama.cpp $release, $compress)"
  ls -l "$out" | awk 'NR > 1 { printf "  %10d  %s\n", $5, $NF }'
  if [ "$size" -ge "$limit_bytes" ]; then
    echo "device-bundle: $size bytes is over the $limit_mib MiB limit" >&2
    exit 1
  fi
  exit 0
fi
mv "$pkg" "$out/pkg"

# 5. The device side: unpack node to a temp dir, put it first on PATH, run the acceptance.
cat >"$out/run-acceptance.sh" <<'EOS'
#!/usr/bin/env bash
# Run the GPU acceptance from this bundle: bash run-acceptance.sh REPORT_DIR
# Writes REPORT_DIR/gpu-acceptance.json; exit 0 when every mandatory check passes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
report_dir=${1:-$PWD/gpu-acceptance-report}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$report_dir"
if [ -f "$here/node.xz" ] && command -v xz >/dev/null; then
  timeout 120 xz -dc "$here/node.xz" >"$tmp/bin/node"
elif [ -f "$here/node.xz" ]; then
  # No xz on the host: Python's lzma reads the same format.
  timeout 120 python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' \
    "$here/node.xz" >"$tmp/bin/node"
else
  timeout 120 gzip -dc "$here/node.gz" >"$tmp/bin/node"
fi
chmod +x "$tmp/bin/node"
export PATH="$tmp/bin:$PATH"
echo "node $(node --version) from the bundle; report → $report_dir/gpu-acceptance.json"
rc=0
bash "$here/pkg/scripts/gpu-acceptance.sh" "$report_dir" || rc=$?
exit "$rc"
EOS
chmod +x "$out/run-acceptance.sh"

size=$(du -sb "$out" | cut -f1)
echo "device bundle: $out ($((size / 1024 / 1024)) MiB; node $node_version, $compress)"
if [ "$size" -ge "$limit_bytes" ]; then
  echo "device-bundle: $size bytes is over the $limit_mib MiB limit" >&2
  exit 1
fi
