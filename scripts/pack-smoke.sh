#!/usr/bin/env bash
# Packaging test of record (docs/operations.md): pack the package, then in an empty directory run the
# tarball with npx as an operator would: --version, doctor, demo. Needs the npm registry.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$root"
tarball=$(npm pack --silent --pack-destination "$work" | tail -n 1)
cd "$work"
export npm_config_yes=true
echo "== npx $tarball --version"; npx "./$tarball" --version
echo "== doctor"; npx "./$tarball" doctor
echo "== demo"; npx "./$tarball" demo --jobs 2 --cache-dir "$work/cache"
echo "pack smoke test: ok"
