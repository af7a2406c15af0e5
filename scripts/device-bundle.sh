#!/usr/bin/env bash
# Device bundle (docs/gpu-acceptance.md): everything a GPU host without network or Node needs to
# run scripts/gpu-acceptance.sh, under 48 MiB, written into OUT_DIR (default .tmp/device-bundle):
#   node.xz (or node.gz)   the running Node binary, compressed
#   pkg/                   the packed package (npm pack) + its runtime dependencies, WITHOUT the
#                          inference runtime (node-llama-cpp, @node-llama-cpp/*)
#   run-acceptance.sh      on the device: bash OUT_DIR/run-acceptance.sh REPORT_DIR
# Needs a built tree (dist/, an addon in prebuilds/ or build/Release/) and npm with its cache or
# the registry. Env: AITBC_BUNDLE_COMPRESS=xz|gzip (default xz when installed), AITBC_BUNDLE_CACHE
# (where the compressed node is kept between runs; compressing takes a minute).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/.tmp/device-bundle}
limit_bytes=$((48 * 1024 * 1024))
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
# The acceptance times the addon with bench/nvml.mjs, which "files" does not publish.
mkdir -p "$pkg/bench"
cp "$root/bench/nvml.mjs" "$pkg/bench/"
# Sources, docs and build files are not needed to run; keep the bundle small.
rm -rf "$pkg/native" "$pkg/CMakeLists.txt"

# 3. Runtime dependencies without the inference runtime: drop node-llama-cpp from the bundle's
# own package.json (so none of its ~100 transitive packages come along) and install the rest
# at the versions of the repo's lock file.
cp "$root/package-lock.json" "$pkg/"
node -e '
  const fs = require("node:fs");
  const f = process.argv[1];
  const p = JSON.parse(fs.readFileSync(f, "utf8"));
  delete p.dependencies["node-llama-cpp"];
  delete p.devDependencies;
  delete p.scripts;
  fs.writeFileSync(f, JSON.stringify(p, null, 2) + "\n");
' "$pkg/package.json"
(cd "$pkg" && npm install --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund \
  --prefer-offline --loglevel=error >/dev/null)
rm -rf "$pkg/node_modules/node-llama-cpp" "$pkg/node_modules/@node-llama-cpp" "$pkg/package-lock.json"
# Type declarations, TypeScript sources and source maps are never loaded at run time.
find "$pkg" \( -name '*.d.ts' -o -name '*.d.cts' -o -name '*.d.mts' -o -name '*.map' -o -name '*.ts' \) -type f -delete

# 4. Can the CLI start without node-llama-cpp? If a static import still pulls it in, ship a
# stub that throws on use, and say so in BUNDLE.json (the acceptance report records it).
stub_note=null
if ! err=$(cd "$pkg" && "$node_bin" bin/aitbc-native-miner.js --version 2>&1 >/dev/null); then
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
printf '{"node":"%s","nodeArchive":"node.%s","builtAt":"%s","inferenceRuntime":false,"nodeLlamaCppStub":%s}\n' \
  "$node_version" "$ext" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$stub_note" >"$pkg/BUNDLE.json"
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
  echo "device-bundle: $size bytes is over the 48 MiB limit" >&2
  exit 1
fi
