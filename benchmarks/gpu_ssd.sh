#!/usr/bin/env bash
# SSD ops on a GPU: the gpu-marked SSD tests, then the causal SSD benchmark (ours vs mamba_ssm's
# mamba_chunk_scan_combined from .vendor/mamba_ssm-*, vs fla's chunk_simple_gla from .vendor/fla_core-*
# when present) with a sweep of our launch configurations, in under 5 minutes. Results: benchmarks/results/ssd_<gpu>.json,
# copied with the logs to $OUT when set. Run from the repository root.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src:${PYTHONPATH:-}
[ -n "${OUT:-}" ] && mkdir -p "$OUT"
log() { if [ -n "${OUT:-}" ]; then tee "$OUT/$1"; else cat; fi; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
timeout 130 python3 -m pytest tests/ops/test_ssd_triton.py tests/ops/test_ssd_torch.py -m gpu -q -x -p no:cacheprovider \
  2>&1 | tail -15 | log gpu_ssd_tests.txt
# Essentials (ours, mamba at chunk 64) always run; fla, non-causal, mamba chunk 256 and the sweep fit in the budget.
timeout 150 python3 benchmarks/bench_ssd.py --sweep --budget 70 "$@" 2>&1 | grep -v Warning | log bench_ssd.txt
[ -n "${OUT:-}" ] && cp benchmarks/results/ssd_*.json "$OUT/" 2>/dev/null
true
