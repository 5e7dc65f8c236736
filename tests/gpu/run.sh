#!/usr/bin/env bash
# tests/gpu/run.sh — everything the CUDA backend must show, on a GPU
# machine, in one command (docs/gpu.md):
#
#   tests/gpu/run.sh                # build (if it can), run, write results
#   tests/gpu/run.sh --bundle       # only build and bundle (on a machine
#                                   # with nvcc, for a GPU machine without)
#
# 1. Builds build-gpu/ with -DCMAKE_CUDA_ARCHITECTURES=${NW_CUDA_ARCH:-90}
#    (H100) when cmake and nvcc are here; otherwise uses a build-gpu/ that
#    was built and bundled elsewhere and carried along.
# 2. Bundles what the binaries need that a bare GPU image lacks (HDF5,
#    jansson, OpenBLAS, cmocka, curl, libsystemd, ...): every library ldd
#    resolves, except glibc's and the driver's, copied to build-gpu/lib,
#    which LD_LIBRARY_PATH then names. cuBLAS (loaded at run time, 600 MB)
#    is bundled only with NW_BUNDLE_CUBLAS=1.
# 3. Runs the GPU tests (label gpu, slow ones included), the CPU test of the
#    device pieces, compute-sanitizer memcheck over the GPU tests' GPU runs,
#    and bench_gpu. Results (logs, a summary) go to $OUT/gpu-results (or
#    build-gpu/results without $OUT). Exit 0 only when everything passed.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
B=build-gpu
results=${OUT:-$root/$B}/gpu-results
[ -n "${OUT:-}" ] || results=$root/$B/results
mkdir -p "$results"
summary=$results/summary.txt
: >"$summary"
say() { echo "$*" | tee -a "$summary"; }

for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
  [ -x "$d/nvcc" ] && { export PATH="$PATH:$d"; break; }
done

bins=(nightwatch-train nightwatch tests/test_device tests/gpu/test_gpu_ops
  tests/gpu/test_gpu_train tests/gpu/test_gpu_oom tests/gpu/test_gpu_bf16
  bench/bench_gpu)

if command -v cmake >/dev/null && command -v nvcc >/dev/null; then
  say "== build ($B, CUDA architectures ${NW_CUDA_ARCH:-90})"
  cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CUDA_ARCHITECTURES="${NW_CUDA_ARCH:-90}" >"$results/build.log" 2>&1 &&
    cmake --build $B -j "$(nproc)" >>"$results/build.log" 2>&1 ||
    { say "build FAILED (see build.log)"; tail -30 "$results/build.log"; exit 1; }
  # the bundle: what ldd finds outside glibc and the driver
  mkdir -p $B/lib
  for b in "${bins[@]}" tests/libnw_fake_nvml.so; do
    ldd "$B/$b" 2>/dev/null | awk '/=> \//{print $3}'
  done | sort -u | while read -r lib; do
    case $(basename "$lib") in
    libc.so* | libm.so* | libpthread.so* | libdl.so* | librt.so* | ld-linux* | \
      libcuda.so* | libnvidia-*) ;;
    *) cp -L "$lib" $B/lib/ ;;
    esac
  done
  if [ "${NW_BUNDLE_CUBLAS:-0}" = 1 ]; then
    cudalib=$(dirname "$(dirname "$(command -v nvcc)")")/lib64
    cp -L "$cudalib"/libcublas.so.13 "$cudalib"/libcublasLt.so.13 $B/lib/
  fi
  say "bundled $(ls $B/lib | wc -l) libraries in $B/lib ($(du -sh $B/lib | cut -f1))"
elif [ -x $B/nightwatch-train ]; then
  say "== no cmake/nvcc here: using the carried $B"
else
  say "no build and no way to build (cmake and nvcc missing)"; exit 1
fi
[ "${1:-}" = "--bundle" ] && exit 0

export LD_LIBRARY_PATH="$root/$B/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
for b in "${bins[@]}"; do
  missing=$(ldd "$B/$b" 2>/dev/null | grep "not found")
  [ -z "$missing" ] || say "$b: missing libraries: $missing"
done
nvidia-smi >"$results/nvidia-smi.txt" 2>&1 && say "$(head -15 "$results/nvidia-smi.txt" | grep -m1 -i 'H100\|H200\|A100\|NVIDIA' || true)"

fail=0
run() { # name, command...
  local name=$1; shift
  local t0=$SECONDS
  "$@" >"$results/$name.log" 2>&1
  local rc=$?
  local verdict=PASS
  [ $rc -eq 77 ] && verdict=SKIP
  [ $rc -ne 0 ] && [ $rc -ne 77 ] && { verdict="FAIL (exit $rc)"; fail=1; }
  say "$(printf '%-34s %-14s %4ds' "$name" "$verdict" $((SECONDS - t0)))"
}

say "== tests"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
run test_device $B/tests/test_device
for t in test_gpu_ops test_gpu_train test_gpu_oom test_gpu_bf16; do
  run $t $B/tests/gpu/$t
done

say "== compute-sanitizer memcheck"
cs=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
if [ -n "$cs" ]; then
  for t in test_gpu_ops test_gpu_train; do
    run memcheck-$t "$cs" --tool memcheck --leak-check full --error-exitcode 99 \
      $B/tests/gpu/$t
  done
  # the trainer itself through a few steps with evaluation and generation
  run memcheck-trainer "$cs" --tool memcheck --error-exitcode 99 \
    $B/nightwatch-train --set device.type=cuda --set train.steps=3 \
    --set eval.every=3 --set eval.generate=8 --set eval.batch=8 \
    --set run.dir="$results/memcheck-run" --resume none
else
  say "compute-sanitizer not found: memcheck NOT run"; fail=1
fi

say "== benchmark"
run bench_gpu $B/bench/bench_gpu $B/nightwatch-train 8
grep -E "measured|GPT-2 small|resume:" "$results/bench_gpu.log" | tee -a "$summary"

say "== $( [ $fail = 0 ] && echo ALL PASSED || echo FAILURES ) (logs in $results)"
exit $fail
