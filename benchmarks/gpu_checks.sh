#!/usr/bin/env bash
# One device session: build the mamba_ssm baseline (if its source is in .vendor/), run the GPU tests,
# then the scan benchmark. Logs and the built extension go to $OUT when set.
set -uo pipefail
OUT=${OUT:-/tmp/visionssm_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src:${PYTHONPATH:-}
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
if ls .vendor/mamba_ssm-*/csrc >/dev/null 2>&1; then
  b=$(ls -d .vendor/mamba_ssm-*/ | head -1)build_sm90
  # A build carried from an earlier session comes split in parts (files come back at most 16 MiB each).
  if ls .vendor/prebuilt/selective_scan_cuda.so.part* >/dev/null 2>&1 && [ ! -f "$b/selective_scan_cuda.so" ]; then
    mkdir -p "$b" && cat .vendor/prebuilt/selective_scan_cuda.so.part* > "$b/selective_scan_cuda.so"
  fi
  ( time python3 -c "import sys; sys.path.insert(0,'benchmarks'); from mamba_baseline import load_selective_scan_fn as f; print('baseline:', f(verbose=False))" ) 2>&1 | grep -v "^ptxas\|^$" | tail -25
  [ -f "$b/selective_scan_cuda.so" ] && split -b 15M "$b/selective_scan_cuda.so" "$OUT/selective_scan_cuda.so.part"
fi
python3 -m pytest tests/ops -m gpu -q -x -p no:cacheprovider 2>&1 | tail -15 | tee "$OUT/gpu_tests.txt"
python3 benchmarks/bench_scan.py "$@" 2>&1 | tee "$OUT/bench_scan.txt"
cp benchmarks/results/scan_*.json "$OUT/" 2>/dev/null || true
