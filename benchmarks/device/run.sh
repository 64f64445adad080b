#!/usr/bin/env bash
# Every check of the open issues that needs the device tool's GPU machine (one H200, 16 cores),
# in one call, sized to leave room for a rerun inside a task's 15 minutes of device time.
#
#   here, first:   bash benchmarks/device/bundle.sh                  (fills .device/)
#   the call:      run(command="bash benchmarks/device/run.sh", carry=[".device"], timeout_s=540)
#   a rerun:       run(command="bash benchmarks/device/run.sh torch workers", carry=[".device"])
#   back here:     python benchmarks/device/take_sections.py <files_at>/benchmarks.md
#
# Steps, in this order (default: all; name some to run only those):
#   tests     pytest tests/gpu: the serving and training halves' CUDA paths (issues 10, 12,
#             13, 14: torch runtime on CUDA, dtypes, CUDA graphs, autocast, channels_last,
#             pinned memory, NCCL at world size 1; four child processes, one cold
#             torch.compile)                                                    ~120-160 s
#   torch     benchmarks/torch_bench.py --device cuda: served vs in-process, fp32 / bf16,
#             with and without CUDA graphs (issue 10)                                ~85 s
#   training  benchmarks/gpu_training.py: Fashion-MNIST and the SMS Transformer through
#             `shipyard train` on CUDA with bf16 autocast, beside the 16-core CPU (12, 13) ~90 s
#   workers   benchmarks/workers_bench.py --workers 1,2,4,8 --scale-load on 16 cores (14) ~120 s
# Each step has its own time limit (STEP_LIMIT_<step>, seconds), the whole run RUN_BUDGET_S, and
# a failing step does not stop the next. A step past its limit gets SIGTERM (the tests step
# SIGINT: pytest then stops as after Ctrl-C, and still writes its summary and JUnit file), then
# SIGKILL 10 s later. Under $OUT, rewritten after each step: summary.txt (a line per step),
# benchmarks.md (docs/benchmarks.md with the sections the steps rewrote: torch-cuda,
# gpu-training, workers-scaling), gpu-tests.xml (JUnit) and logs.tar.gz (every log). The
# summary is printed last. REHEARSE=1 runs the steps on a machine without a GPU.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
bundle="$root/.device"
out="${OUT:-/tmp/device-out}"
logs=/tmp/device-logs  # packed into $OUT/logs.tar.gz after each step (8 files come back at most)
rm -rf "$logs"; mkdir -p "$logs" "$out"
summary="$out/summary.txt"
: >"$summary"
py="${PYTHON:-python3}"
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(tests torch training workers)
t_start=$(date +%s)
# the whole run ends within RUN_BUDGET_S (default 510: a call's timeout_s of 540 with room to
# pack the results): a step gets at most what is left, and none starts with under 20 s left
budget="${RUN_BUDGET_S:-510}"

note() { echo "$*" | tee -a "$summary"; }

# -- set-up (always): the carried wheels, tools and data ---------------------------------------
if [ ! -d "$bundle/wheels" ]; then
  note "setup: $bundle/wheels missing: run benchmarks/device/bundle.sh here and carry .device"
  exit 2
fi
site=/tmp/device-site
rm -rf "$site"
if [ "$("$py" -c 'import sys; print(sys.version_info[:2] == (3, 12))')" = True ]; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" "$bundle"/wheels/*.whl >"$logs/setup.log" 2>&1 \
    || { note "setup: pip install of the carried wheels failed (logs/setup.log)"
         tail -5 "$logs/setup.log"; }
else  # a rehearsal with another Python (its own packages): the wheels are for 3.12
  note "setup: $("$py" -V) is not 3.12: the carried wheels are not installed"
fi
export PYTHONPATH="$root/src:$root/tests:$site${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$site/bin:$bundle/bin:$PATH"
chmod +x "$bundle"/bin/* "$site"/bin/* 2>/dev/null || true
# .device/lib: libcudart.so.12 and libb64 for perf_analyzer, libluajit for wrk
export LD_LIBRARY_PATH="$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONUNBUFFERED=1 GRPC_VERBOSITY=ERROR
# ../shared/data beside the checkout, as here, for anything that reads it by that path (the
# steps themselves are given the carried files' paths)
[ -e "$root/../shared" ] || ln -s "$bundle/shared" "$root/../shared" 2>/dev/null || true
{
  echo "== $(date -u +%FT%TZ) $(uname -a)"
  nproc; free -g | head -2
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv 2>&1
  "$py" - <<'PY'
import importlib.metadata as m, sys
print("python", sys.version.split()[0], sys.executable)
for name in ("torch", "triton", "numpy", "onnxruntime", "onnx", "grpcio", "protobuf",
             "pydantic", "tritonclient", "scikit-learn", "tokenizers", "pillow", "uvloop",
             "httptools"):
    try:
        print(name, m.version(name))
    except m.PackageNotFoundError:
        print(name, "MISSING")
try:
    import torch
    print("cuda", torch.cuda.is_available(), torch.version.cuda,
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
except ImportError as exc:
    print("torch Error:", exc)
import shipyard, shipyard.serving.server  # the server imports on this stack
print("shipyard", shipyard.__file__)
PY
  # tritonclient.grpc in its own process: its protos and the server's share the names
  "$py" -c "import tritonclient.grpc; print('tritonclient.grpc imports')" 2>&1 | tail -1
  for tool in wrk perf_analyzer; do  # where the benchmarks look: beside the Python, then PATH
    printf '%s: ' "$tool"
    beside="$(dirname "$(command -v "$py")")/$tool"
    if [ -x "$beside" ]; then echo "$beside"; else command -v "$tool" || echo "NOT FOUND"; fi
  done
  # torch.compile on CUDA (tests/gpu's compile test): Triton builds its launcher with a C
  # compiler against Python.h
  printf 'C compiler: '; command -v cc || command -v gcc || echo "NOT FOUND"
  "$py" -c "import os, sysconfig; h = os.path.join(sysconfig.get_paths()['include'], 'Python.h'); print('Python.h:', h if os.path.exists(h) else 'NOT FOUND')"
  pa="$(dirname "$(command -v "$py")")/perf_analyzer"
  [ -x "$pa" ] || pa="$(command -v perf_analyzer)"
  ldd "$pa" 2>&1 | grep -E "not found|cudart|b64" || true
  ldd "$(command -v wrk)" 2>&1 | grep -E "not found|luajit" || true
} >"$logs/env.log" 2>&1
grep -E "^(python|torch|triton|cuda|shipyard|tritonclient)[ .]|NOT FOUND|not found|MISSING|Error" \
  "$logs/env.log" | tee -a "$summary"

run_step() {  # name limit command...
  local name="$1" limit="$2"; shift 2
  local sig=TERM
  [ "$name" = tests ] && sig=INT  # pytest: KeyboardInterrupt, summary and JUnit file kept
  local var="STEP_LIMIT_$name"; limit="${!var:-$limit}"
  local t0; t0=$(date +%s)
  local left=$(( budget - (t0 - t_start) - 10 ))
  if [ "$left" -lt 20 ]; then
    note "$name: SKIPPED, ${left} s left of the ${budget} s budget"
    return
  fi
  [ "$limit" -le "$left" ] || limit="$left"
  echo "== $name (limit ${limit} s): $*"
  timeout -s "$sig" -k 10 "$limit" "$@" >"$logs/$name.log" 2>&1
  local rc=$?
  local took=$(( $(date +%s) - t0 ))
  local verdict="ok"
  [ $rc -eq 0 ] || verdict="FAILED (exit $rc)"
  [ $rc -eq 124 ] && verdict="TIMED OUT after ${limit} s"
  note "$name: $verdict in ${took} s"
  tail -n 25 "$logs/$name.log"
  save
}

save() {  # what comes back even if the call is cut short later
  cp docs/benchmarks.md "$out/benchmarks.md"
  tar -czf "$out/logs.tar.gz" -C "$(dirname "$logs")" "$(basename "$logs")" 2>/dev/null || true
}

# REHEARSE=1: the same steps on a machine without a GPU (here), writing no document: torch_bench
# --rehearse, the training on the CPU for one epoch, the workers run at 1 and 2 workers
gpu_training=(--device cuda --precision bf16)
workers=(--workers 1,2,4,8)
torch_args=(--device cuda)
if [ "${REHEARSE:-0}" = 1 ]; then
  note "rehearsal (REHEARSE=1): no GPU rows, docs/benchmarks.md left alone"
  gpu_training=(--device cpu --precision fp32 --quick --no-write)
  workers=(--workers 1,2 --no-write)
  torch_args=(--device cuda --rehearse)
fi

for step in "${steps[@]}"; do
  case "$step" in
    tests)
      # -v: a line per test as it ends (a log cut short still says how far it got);
      # --durations: each test's time, for the next run's estimates
      run_step tests 210 "$py" -m pytest tests/gpu -v -p no:cacheprovider -rA \
        -o addopts="--strict-markers" -o "filterwarnings=ignore::DeprecationWarning" \
        --durations 40 --timeout 120 --junitxml "$out/gpu-tests.xml" ;;
    torch)
      run_step torch 170 "$py" benchmarks/torch_bench.py "${torch_args[@]}" ;;
    training)
      run_step training 200 "$py" benchmarks/gpu_training.py "${gpu_training[@]}" \
        --fashion "$bundle/fashion-mnist" --sms "$bundle/shared/data/sms_spam/SMSSpamCollection" ;;
    workers)
      run_step workers 200 "$py" benchmarks/workers_bench.py "${workers[@]}" --duration 4 \
        --scale-load --wrk-threads 4 --grpc-clients-per-worker 2 ;;
    *)
      note "unknown step '$step' (steps: tests torch training workers)" ;;
  esac
done

note "all: $(( $(date +%s) - t_start )) s; steps: ${steps[*]}"
save
echo "== summary"
cat "$summary"
