#!/bin/sh
# Install the Debian packages that ftune's build, tests and benchmarks need. Idempotent and quiet
# when everything is present. Runs apt-get only for what is missing.
set -e
PKGS="gcc make pkg-config libjansson-dev libonig-dev libutf8proc-dev unicode-data libopenblas-dev libopenblas0-openmp libdnnl-dev libsqlite3-dev
libmicrohttpd-dev libomp-dev clang libclang-rt-14-dev python3 python3-torch python3-numpy python3-jinja2
libsnappy-dev zlib1g-dev libzstd-dev liblz4-dev libbrotli-dev chromium
openmpi-bin libopenmpi-dev iproute2"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# Node.js and npm: use the machine's own when present (a Node.js from outside Debian conflicts
# with Debian's npm package), else Debian's.
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
    echo "deps: installing$missing"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# npm peers for the references, fixtures and benchmarks, playwright-core for the web UI's browser
# tests (it drives Debian's chromium above; it never downloads a browser) and the `openai` client the
# /v1 tests call the server with, and Ajv with ajv-formats, the independent JSON Schema validator of
# the constrained-decoding tests; pinned in tools/npm/package.json,
# installed again whenever package.json changes (a stamp of its hash in node_modules).
if [ -f tools/npm/package.json ]; then
    want=$(cksum < tools/npm/package.json)
    have=$(cat tools/npm/node_modules/.ftune-package-stamp 2>/dev/null || true)
    if [ "$want" != "$have" ]; then
        echo "deps: installing npm reference packages"
        (cd tools/npm && npm install --no-audit --no-fund --silent >/dev/null) &&
            printf '%s\n' "$want" > tools/npm/node_modules/.ftune-package-stamp
    fi
fi
# llama.cpp, the GGUF export's and the decode benchmark's peer: npm node-llama-cpp with its prebuilt
# CPU binaries (@node-llama-cpp/linux-x64), pinned in tools/npm-llama/package.json. A folder of its
# own so that --omit=optional keeps npm from fetching its CUDA/Vulkan variants (about 350 MB) without
# dropping the platform binaries other peers take as optional dependencies (DuckDB's);
# NODE_LLAMA_CPP_SKIP_DOWNLOAD makes its postinstall neither download nor build llama.cpp.
if [ -f tools/npm-llama/package.json ]; then
    want=$(cksum < tools/npm-llama/package.json)
    have=$(cat tools/npm-llama/node_modules/.ftune-package-stamp 2>/dev/null || true)
    if [ "$want" != "$have" ]; then
        echo "deps: installing npm node-llama-cpp (prebuilt llama.cpp, CPU)"
        (cd tools/npm-llama && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --omit=optional --no-audit --no-fund \
            --silent >/dev/null) &&
            printf '%s\n' "$want" > tools/npm-llama/node_modules/.ftune-package-stamp
    fi
fi
exit 0
