#!/usr/bin/env bash
# One device session for the SSD-family models: their GPU tests, then img/s of EfficientViM-M1..M4 and VSSD-T vs
# timm baselines (bf16, batch 256, 224^2). Results: benchmarks/results/ssd_models_<gpu>.json, copied to $OUT.
# Fits the 200 s that benchmarks/gpu_all.sh gives the 'ssdmodels' part (70 s tests + 120 s benchmark).
set -uo pipefail
OUT=${OUT:-/tmp/visionssm_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src:${PYTHONPATH:-}
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton, timm; print(torch.__version__, triton.__version__, timm.__version__)"
timeout 70 python3 -m pytest -m gpu -q -x -p no:cacheprovider tests/models/test_vssd.py tests/models/test_efficientvim.py \
  2>&1 | tail -15 | tee "$OUT/gpu_tests_ssd_models.txt"
timeout 120 python3 benchmarks/bench_ssd_models.py --batch 256 --img-size 224 --dtype bf16 "$@" \
  2>&1 | tee "$OUT/bench_ssd_models.txt"
cp benchmarks/results/ssd_models_*.json "$OUT/" 2>/dev/null || true
