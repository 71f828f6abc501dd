#!/usr/bin/env bash
# `visionssm bench` on one GPU (H100): the issue's comparison set and the families on main, < 9 minutes
# (hard caps: 170 + 40 + 120 + 2 x 75 + 40 s; each sweep stops starting cases at its --budget).
#
#   bash benchmarks/gpu_bench.sh            # from the repo root; results in benchmarks/results/ (+ $OUT/)
#
# 1. Vim-T/S vs DeiT-T/S (SDPA and naive attention), bf16 inference at 1248 (the bar) then 224..2048;
#    batch 128 at 224, 32 at 512, 16 at 768, 8 from 1024 (`--batch auto`).      -> bench_<gpu>.json + PNGs
# 2. Training throughput (forward + backward + AdamW) at 224, batch 128.          -> bench_<gpu>_train.json
# 3. VMamba-T vs Swin-T over resolutions, and every other family that is registered, at 224
#    (names that do not exist on this checkout are skipped).                     -> bench_<gpu>_families.json
# 4. `visionssm profile` of Vim-T and DeiT-T at 1248, batch 8, bf16 (where the time goes). -> profile_*.txt
# 5. The gpu-marked tests of tests/bench.
# Every sweep has a time budget (--budget): cases not started in time are recorded as "skipped".
set -uo pipefail
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python}
RES=benchmarks/results
mkdir -p "$RES"
T0=$(date +%s)
elapsed() { echo "[gpu_bench] $(( $(date +%s) - T0 ))s: $*"; }

TAG=$($PY -c "import torch; from visionssm.bench.sweep import device_tag; print(device_tag(torch.device('cuda')))") \
  || { echo "gpu_bench: no CUDA device"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

# Registered names only (other families arrive on main from other branches).
existing() {
  $PY - "$@" <<'EOF'
import sys
import timm
import visionssm.models  # noqa: F401
print(" ".join(n for n in sys.argv[1:] if timm.is_model(n)))
EOF
}
COMMON=(--device cuda --warmup 5 --iters 30 --no-progress)

elapsed "1. Vim vs DeiT, inference, 224..2048"
timeout 170 $PY -m visionssm.cli bench vim_tiny_patch16_224 deit_tiny_patch16_224 vim_small_patch16_224 \
  deit_small_patch16_224 --res 1248 224 512 768 1024 2048 --batch auto --dtype bf16 --mode infer \
  --attention both --max-time 1.0 --budget 140 "${COMMON[@]}" --out "$RES/bench_${TAG}.json"

elapsed "2. training throughput at 224"
timeout 40 $PY -m visionssm.cli bench vim_tiny_patch16_224 deit_tiny_patch16_224 vim_small_patch16_224 \
  deit_small_patch16_224 --res 224 --batch 128 --dtype bf16 --mode train --attention both --max-time 1.0 \
  --budget 25 "${COMMON[@]}" --out "$RES/bench_${TAG}_train.json"

elapsed "3. VMamba vs Swin, other families"
FAMILIES=$(existing vmamba_tiny_s1l8 swin_tiny_patch4_window7_224 vanilla_vmamba_tiny msvmamba_tiny \
  efficientvmamba_tiny vssd_tiny visionssm_efficientvim_m4 plainmamba_l1 mambaout_tiny)
echo "families present: $FAMILIES"
if [ -n "$FAMILIES" ]; then
  # 50 s wrote nothing on an H100 (model builds + first Triton compiles of 8 families): 224 only, more time.
  timeout 120 $PY -m visionssm.cli bench $FAMILIES --res 224 --batch auto --dtype bf16 --mode infer \
    --attention both --max-time 0.7 --budget 90 "${COMMON[@]}" --out "$RES/bench_${TAG}_families.json"
fi

elapsed "4. profiles at 1248, batch 8"
for m in vim_tiny_patch16_224 deit_tiny_patch16_224; do
  timeout 75 $PY -m visionssm.cli profile "$m" --res 1248 --batch 8 --dtype bf16 --device cuda --ops 20 \
    --json "$RES/profile_${m}_1248_${TAG}.json" | tee "$RES/profile_${m}_1248_${TAG}.txt"
done

elapsed "5. gpu tests"
timeout 40 $PY -m pytest -q -m gpu tests/bench -p no:cacheprovider

if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  cp "$RES"/bench_"${TAG}"*.json "$RES"/bench_"${TAG}"*.png "$RES"/profile_*"${TAG}".* "$OUT"/ 2>/dev/null
fi
elapsed "done"
