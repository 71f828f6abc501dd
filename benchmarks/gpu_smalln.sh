#!/usr/bin/env bash
# Time-parallel small-N (N <= 4) Triton scans on one GPU (< 4 minutes on an H100; timeouts sum to 240 s):
# their GPU tests, then old (VISIONSSM_*_SMALLN=0) vs new kernels at N <= 4 shapes for the plain scan
# (+ mamba_ssm when it imports, + a tile sweep) and the routed scan (VMamba-T N = 1 stages), then VMamba-T s1l8
# inference vs Swin-T with the new kernels.
# Run from the repo root; logs and JSON go to benchmarks/results/ and, when set, to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/visionssm_out}
mkdir -p "$OUT" benchmarks/results
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src:${PYTHONPATH:-}
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
# mamba_ssm baseline as in gpu_routes.sh (installed package or the prebuilt extension in .vendor/).
base=--no-baseline
python3 -c "import mamba_ssm" >/dev/null 2>&1 && base=
if ls .vendor/mamba_ssm-*/csrc >/dev/null 2>&1; then
  b=$(ls -d .vendor/mamba_ssm-*/ | head -1)build_sm90
  if ls .vendor/prebuilt/selective_scan_cuda.so.part* >/dev/null 2>&1 && [ ! -f "$b/selective_scan_cuda.so" ]; then
    mkdir -p "$b" && cat .vendor/prebuilt/selective_scan_cuda.so.part* > "$b/selective_scan_cuda.so"
  fi
  [ -f "$b/selective_scan_cuda.so" ] && base=
fi

timeout 75 python3 -m pytest -m gpu -q -p no:cacheprovider -k smalln \
  tests/ops/test_selective_scan_triton.py tests/ops/test_scan_routes_triton.py 2>&1 \
  | tail -15 | tee "$OUT/gpu_smalln_tests.txt"

# Plain scan: old vs new (ms, fwd / fwd+bwd, bf16), same inputs; bench_scan.py's timing and inputs.
timeout 70 python3 - "$base" <<'EOF' 2>&1 | tee "$OUT/smalln_scan.txt"
import datetime, json, os, sys
from pathlib import Path
import torch, triton
sys.path.insert(0, "benchmarks")
from bench_scan import make_inputs, time_fn
from mamba_baseline import load_selective_scan_fn
from visionssm.ops.selective_scan import selective_scan

shapes = [(64, 384, 3136, 1), (1, 384, 3136, 1), (64, 384, 3136, 4)]
ours = lambda **kw: selective_scan(**kw, delta_softplus=True, backend="triton")
base = None if sys.argv[1] else load_selective_scan_fn(verbose=False)
records = []
print(f"{'shape':<24}{'old fwd/fwd+bwd':>20}{'new fwd/fwd+bwd':>20}{'mamba fwd/fwd+bwd':>20}")
for shape in shapes:
    x = make_inputs(*shape, torch.bfloat16)
    rec = dict(shape=list(shape))
    for name, env in (("old", "0"), ("new", "1")):
        os.environ["VISIONSSM_SCAN_SMALLN"] = env
        rec[f"{name}_fwd_ms"], rec[f"{name}_fwdbwd_ms"] = time_fn(ours, x, False), time_fn(ours, x, True)
    if base is not None:
        mb = lambda **kw: base(**kw, delta_softplus=True)
        rec["mamba_fwd_ms"], rec["mamba_fwdbwd_ms"] = time_fn(mb, x, False), time_fn(mb, x, True)
    cell = lambda k: f"{rec[k + '_fwd_ms']:8.3f}/{rec[k + '_fwdbwd_ms']:8.3f}" if k + "_fwd_ms" in rec else "-"
    print(f"{str(shape):<24}{cell('old'):>20}{cell('new'):>20}{cell('mamba'):>20}", flush=True)
    records.append(rec)
# Tile sweep at the N = 1 shape (VISIONSSM_SCAN_SMALLN_CFG=bd,bt,warps; default 4,256,4).
x = make_inputs(64, 384, 3136, 1, torch.bfloat16)
os.environ["VISIONSSM_SCAN_SMALLN"] = "1"
sweep = []
for cfg in ("4,128,4", "8,256,8", "2,512,4", "8,128,4", "4,512,8"):
    os.environ["VISIONSSM_SCAN_SMALLN_CFG"] = cfg
    sweep.append(dict(cfg=cfg, fwd_ms=time_fn(ours, x, False), fwdbwd_ms=time_fn(ours, x, True)))
    print(f"cfg {cfg:<10}{sweep[-1]['fwd_ms']:8.3f}/{sweep[-1]['fwdbwd_ms']:8.3f}", flush=True)
del os.environ["VISIONSSM_SCAN_SMALLN_CFG"]
gpu = torch.cuda.get_device_name().lower().replace("nvidia", "").split()[0]  # "h100", like bench_scan.py
res = dict(device=torch.cuda.get_device_name(), date=datetime.datetime.now(datetime.timezone.utc).isoformat(),
           torch=torch.__version__, triton=triton.__version__, dtype="bf16", records=records,
           cfg_sweep_64x384x3136x1=sweep)
Path(f"benchmarks/results/smalln_{gpu}.json").write_text(json.dumps(res, indent=2) + "\n")
EOF

# Routed scan: old vs new at VMamba-T's N = 1 stages (bench_routes.py, one JSON each).
for v in 0 1; do
  VISIONSSM_ROUTES_SMALLN=$v timeout 25 python3 benchmarks/bench_routes.py --dtype bf16 --batch 32 --no-baseline \
    --shapes 96,56,56,1 192,28,28,1 --out benchmarks/results/routes_smalln$v.json 2>&1 \
    | tee "$OUT/bench_routes_smalln$v.txt"
done

# VMamba-T (N = 1) inference throughput vs Swin-T with the new kernels.
timeout 45 python3 benchmarks/bench_vmamba.py --models vmamba_tiny_s1l8 --time-budget 30 --no-baseline \
  --out benchmarks/results/vmamba_smalln.json 2>&1 | tee "$OUT/bench_vmamba_smalln.txt"
cp benchmarks/results/smalln_*.json benchmarks/results/routes_smalln*.json benchmarks/results/vmamba_smalln.json \
  "$OUT/" 2>/dev/null || true
