"""Fused cross scan (delta formed inside the routed kernel from SS2D's low-rank dt) vs the routed path it
replaces at inference, on VMamba-T's four SS2D shapes, bf16, batch 128, inputs laid out as in the model.

    python benchmarks/bench_cross_fused.py [--batch 128] [--configs bd,bt,warps ...] [--out FILE]

Both sides start from x_dbl (SS2D's x_proj output) and end at the merged float32 map:
  routed  torch.einsum for delta (as SS2D.scan) + routed_selective_scan (Triton, token-major);
  fused   fused_cross_scan (no delta tensor, no einsum);
  mamba   explicit delta + gathered route copies + mamba_ssm's selective_scan_fn + scatter (if importable).
Median ms (triton.testing.do_bench), forward only (the fused path has no backward). Writes
benchmarks/results/cross_fused_<gpu>.json: device, date, records with shape, ms per path and ratios.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import sys
from pathlib import Path

import torch
from triton.testing import do_bench

sys.path.insert(0, str(Path(__file__).resolve().parent))
from visionssm.ops.scan_routes import cross_routes, routed_selective_scan  # noqa: E402
from visionssm.ops.scan_routes.cross_fused import fused_cross_scan  # noqa: E402

STAGES = [(96, 56, 56, 6), (192, 28, 28, 12), (384, 14, 14, 24), (768, 7, 7, 48)]  # VMamba-T: C, H, W, R


def inputs(batch, ch, H, W, R, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, device="cuda")
    L = H * W
    return dict(
        u=r(batch, L, ch).bfloat16().transpose(1, 2), x_dbl=r(batch, L, 4, R + 2).bfloat16(),
        dt_weight=r(4, ch, R) * R**-0.5, A=-(torch.rand(4 * ch, 1, generator=g, device="cuda") + 0.5),
        D=r(4 * ch), delta_bias=r(4 * ch) * 0.5 - 2.0,
    )


def routed_path(u, x_dbl, dt_weight, A, D, delta_bias, H, W, index, scan=routed_selective_scan):
    batch, L, K, _ = x_dbl.shape
    R = dt_weight.shape[2]
    dts, bs, cs = x_dbl.split([R, 1, 1], dim=-1)
    delta = torch.einsum("blkr,kdr->blkd", dts, dt_weight.to(dts.dtype)).reshape(batch, L, -1).transpose(1, 2)
    return scan(u, delta, A, bs.permute(0, 2, 3, 1), cs.permute(0, 2, 3, 1), index, D=D, delta_bias=delta_bias,
                delta_softplus=True, out_dtype=torch.float32)


def bench(fn):
    with torch.no_grad():
        return do_bench(fn, warmup=25, rep=100, return_mode="median")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--configs", nargs="*", default=[],
                   help="extra VISIONSSM_ROUTES_SMALLN_CFG values to time the fused path with")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_cross_fused: needs a CUDA device")
    mamba = None
    if not a.no_baseline:
        from bench_vmamba import mamba_routed_scan
        from mamba_baseline import load_selective_scan_fn

        fn = load_selective_scan_fn(verbose=False)
        mamba = mamba_routed_scan(fn) if fn is not None else None
    gpu = torch.cuda.get_device_name()
    records = []
    print(f"{'stage (C,H,W,R)':<20}{'routed':>9}{'fused':>9}{'x':>7}{'mamba':>9}{'x':>7}"
          + "".join(f"{c:>16}" for c in a.configs))
    for ch, H, W, R in STAGES:
        x = inputs(a.batch, ch, H, W, R)
        index = cross_routes(H, W, device="cuda")
        routed_fn = functools.partial(routed_path, **x, H=H, W=W, index=index)
        fused_fn = functools.partial(fused_cross_scan, **x, H=H, W=W)
        routed, fused = bench(routed_fn), bench(fused_fn)
        with torch.no_grad():  # same numbers (bf16 delta on the routed path: 1e-2)
            y_routed = routed_fn()
            err = ((fused_fn() - y_routed).norm() / y_routed.norm()).item()
        rec = dict(shape=dict(batch=a.batch, C=ch, H=H, W=W, R=R, N=1), routed_ms=routed, fused_ms=fused,
                   speedup_vs_routed=routed / fused, rel_diff_vs_routed=err)
        base = ""
        if mamba is not None:
            m = bench(functools.partial(routed_fn, scan=mamba))
            rec.update(base_mamba_ms=m, speedup_vs_mamba=m / fused)
            base = f"{m:9.3f}{m / fused:7.2f}"
        else:
            base = f"{'-':>9}{'-':>7}"
        cells = []
        for cfg in a.configs:
            os.environ["VISIONSSM_ROUTES_SMALLN_CFG"] = cfg
            t = bench(fused_fn)
            del os.environ["VISIONSSM_ROUTES_SMALLN_CFG"]
            rec.setdefault("configs", {})[cfg] = t
            cells.append(f"{t:16.3f}")
        records.append(rec)
        print(f"{str((ch, H, W, R)):<20}{routed:9.3f}{fused:9.3f}{routed / fused:7.2f}{base}" + "".join(cells)
              + f"   diff {err:.1e}", flush=True)
    tag = gpu.lower().replace("nvidia", "").strip().split()[0]
    out = Path(a.out) if a.out else Path(__file__).parent / "results" / f"cross_fused_{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": gpu, "date": datetime.date.today().isoformat(), "torch": torch.__version__,
                               "triton": __import__("triton").__version__, "dtype": "bf16",
                               "records": records}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
