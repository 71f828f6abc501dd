#!/usr/bin/env bash
# VMamba family on one GPU (< 5 minutes on an H100): the family's GPU tests, then the inference benchmark
# (every registered VMamba / MSVMamba / EfficientVMamba at 224^2, batch 128, bf16, vs timm Swin-T and, when
# mamba_ssm is importable without building, vs the same models on mamba_ssm's selective_scan_fn).
# Run from the repo root; logs and JSON go to benchmarks/results/ and, when set, to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/visionssm_out}
mkdir -p "$OUT" benchmarks/results
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src:${PYTHONPATH:-}
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton, timm; print('torch', torch.__version__, 'triton', triton.__version__, 'timm', timm.__version__)"
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
timeout 80 python3 -m pytest -m gpu -q -p no:cacheprovider tests/layers/test_ss2d.py tests/models/test_vmamba.py \
  tests/models/test_msvmamba.py tests/models/test_efficientvmamba.py 2>&1 | tail -15 | tee "$OUT/gpu_vmamba_tests.txt"
timeout 200 python3 benchmarks/bench_vmamba.py --time-budget 150 $base "$@" 2>&1 | tee "$OUT/bench_vmamba.txt"
cp benchmarks/results/vmamba_*.json "$OUT/" 2>/dev/null || true
