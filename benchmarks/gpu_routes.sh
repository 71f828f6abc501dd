#!/usr/bin/env bash
# Routed 2D scan on one GPU (< 5 minutes on an H100): the scan_routes GPU tests, then the routes benchmark
# (VMamba-T stage shapes, bf16: ours vs gather + our plain scan + scatter vs mamba_ssm on gathered copies).
# Run from the repo root; logs and JSON go to benchmarks/results/ and, when set, to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/visionssm_out}
mkdir -p "$OUT" benchmarks/results
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src:${PYTHONPATH:-}
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
# mamba_ssm baseline: an installed package, or the source in .vendor/ with a prebuilt extension (see
# gpu_checks.sh). Without either it is skipped: building it takes longer than this script may run.
base=--no-baseline
python3 -c "import mamba_ssm" >/dev/null 2>&1 && base=
if ls .vendor/mamba_ssm-*/csrc >/dev/null 2>&1; then
  b=$(ls -d .vendor/mamba_ssm-*/ | head -1)build_sm90
  if ls .vendor/prebuilt/selective_scan_cuda.so.part* >/dev/null 2>&1 && [ ! -f "$b/selective_scan_cuda.so" ]; then
    mkdir -p "$b" && cat .vendor/prebuilt/selective_scan_cuda.so.part* > "$b/selective_scan_cuda.so"
  fi
  [ -f "$b/selective_scan_cuda.so" ] && base=
fi
timeout 150 python3 -m pytest tests/ops/test_scan_routes_triton.py -m gpu -q -p no:cacheprovider 2>&1 \
  | tail -15 | tee "$OUT/gpu_routes_tests.txt"
timeout 140 python3 benchmarks/bench_routes.py --dtype bf16 --batch 32 $base "$@" 2>&1 | tee "$OUT/bench_routes.txt"
cp benchmarks/results/routes_*.json "$OUT/" 2>/dev/null || true
