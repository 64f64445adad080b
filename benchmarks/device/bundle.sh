#!/usr/bin/env bash
# Fills .device/ (git-ignored) with what benchmarks/device/run.sh needs on the device tool's GPU
# machine and cannot get there (nothing outside that machine can be reached): the Python
# packages its image lacks, as wheels for its Python (3.12); wrk and perf_analyzer's libb64 with
# the libraries they link; Fashion-MNIST; and the parts of ../shared/data the runs read.
#   benchmarks/device/bundle.sh        (here, once per session; about 60 MiB, ~30 s)
# Then one call of the device tool's `run`, with carry [".device"]:
#   bash benchmarks/device/run.sh      (see its header and benchmarks/device/README.md)
# The image's own packages (torch 2.11+cu130, numpy, onnxruntime, scikit-learn, pandas, ...) are
# listed in the tool library's device/KINDS.md; the wheels below are the ones it lacks, or whose
# version the project needs (grpcio >= 1.76 for the committed stubs, protobuf 6.x).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dest="$root/.device"
venv="${SHIPYARD_VENV:-$root/.venv}"
py="$venv/bin/python"
rm -rf "$dest"
mkdir -p "$dest/wheels" "$dest/bin" "$dest/lib" "$dest/fashion-mnist" "$dest/shared/data"

# The project's dependencies (pyproject's serve and train extras) that the GPU machine's image
# holds (device/KINDS.md of the tool library, read 2026-11-17); every other one is a wheel below
# (tests/docs/test_device_script.py checks that each dependency is in one list or the other).
image_has=(numpy onnxruntime onnx onnxscript pyyaml typer rich pillow tokenizers
  prometheus-client uvloop pandas pyarrow scikit-learn matplotlib charset-normalizer torch
  httpx psutil pytest pytest-timeout)
# the versions the project's own venv runs (so the device runs what the tests here run)
version() { "$py" -c "import importlib.metadata as m; print(m.version('$1'))"; }
wheels=(
  "pydantic==$(version pydantic)" "pydantic_core==$(version pydantic_core)"
  annotated-types typing-inspection "typing_extensions==$(version typing_extensions)"
  "httptools==$(version httptools)" "orjson==$(version orjson)"
  "grpcio==$(version grpcio)" "protobuf==$(version protobuf)"
  "skl2onnx==$(version skl2onnx)" "nltk==$(version nltk)"
  # uvicorn: the bare ASGI ceiling of serve_bench.py and workers_bench.py
  "uvicorn==$(version uvicorn)"
  # perf_analyzer (inside the wheel); tritonclient.grpc for tests/gpu (it needs rapidjson;
  # tritonclient.http needs geventhttpclient <= 2.0.2, which has no wheel for Python 3.12)
  "tritonclient==2.41.0" "python-rapidjson==$(version python-rapidjson)"
)
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux_2_5_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${platforms[@]}" -d "$dest/wheels" "${wheels[@]}" 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" || true
# the libcudart.so.12 perf_analyzer links (the image's CUDA is 13), alone: its wheel is 3.5 MiB
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${platforms[@]}" -d "$dest/cudart" nvidia-cuda-runtime-cu12 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" || true
unzip -q -j -o "$dest"/cudart/*.whl 'nvidia/cuda_runtime/lib/libcudart.so.12' -d "$dest/lib"
rm -rf "$dest/cudart"
for w in "${wheels[@]}"; do
  name="${w%%==*}"; name="${name//-/_}"
  ls "$dest/wheels" | grep -qi "^${name}-" || { echo "bundle: no wheel for $w" >&2; exit 1; }
done

# wrk (Debian's) and the libraries it and perf_analyzer link that the image may lack
for tool in wrk; do
  cp "$(command -v "$tool")" "$dest/bin/" \
    || { echo "bundle: $tool not found: apt-get install $tool" >&2; exit 1; }
done
for lib in libluajit-5.1.so.2 libb64.so.0d; do
  path="$(/sbin/ldconfig -p | awk -v l="$lib" '$1 == l {print $NF; exit}')"
  [ -n "$path" ] || { echo "bundle: $lib not found (make test installs it)" >&2; exit 1; }
  cp -L "$path" "$dest/lib/$lib"
done

# Fashion-MNIST (Debian's dataset-fashion-mnist), for examples/fashion_mnist
cp /usr/share/datasets/fashion-mnist/*-ubyte.gz "$dest/fashion-mnist/"
# ../shared/data: the SMS messages (examples/sms_spam_transformer, tests/text_corpus.py) and
# the Titanic table
for d in sms_spam titanic; do
  cp -r "$root/../shared/data/$d" "$dest/shared/data/"
done

size=$(du -sb "$dest" | cut -f1)
# (one du over every path: xargs may split them into several du calls, each with its own total)
tree=$(cd "$root" && git ls-files -z --cached --others --exclude-standard \
  | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
total=$((size + tree))
printf 'bundle: .device is %d MiB; with the working tree %d MiB of the 64 MiB a call carries\n' \
  $((size >> 20)) $((total >> 20))
if [ "$total" -ge $((64 << 20)) ]; then
  echo "bundle: over 64 MiB: the device tool would refuse the call" >&2; exit 1
fi
