#!/usr/bin/env bash
# SSD ops on a GPU, in under 200 s (gpu_all.sh's limit for this part): the causal SSD benchmark (ours vs
# mamba_ssm's mamba_chunk_scan_combined from .vendor/mamba_ssm-*, vs fla's chunk_simple_gla from
# .vendor/fla_core-* when present; then non-causal, HSM, mamba at chunk 256 and a sweep of our launch
# configurations as the time budget allows), then the gpu-marked SSD tests. Results:
# benchmarks/results/ssd_<gpu>.json, copied with the logs to $OUT when set. Run from the repository root.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src:${PYTHONPATH:-}
[ -n "${OUT:-}" ] && mkdir -p "$OUT"
log() { if [ -n "${OUT:-}" ]; then tee "$OUT/$1"; else cat; fi; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
timeout 125 python3 benchmarks/bench_ssd.py --sweep --budget 50 "$@" 2>&1 | grep -v Warning | log bench_ssd.txt
[ -n "${OUT:-}" ] && cp benchmarks/results/ssd_*.json "$OUT/" 2>/dev/null
timeout 65 python3 -m pytest tests/ops/test_ssd_triton.py tests/ops/test_ssd_torch.py -m gpu -v -p no:cacheprovider \
  2>&1 | grep -E "PASSED|FAILED|ERROR|Error|assert|passed|failed" | tail -30 | log gpu_ssd_tests.txt
true
