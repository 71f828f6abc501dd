"""GPU benchmark of the routed 2D scan (VMamba cross-scan shapes), forward and forward+backward.

    python benchmarks/bench_routes.py [--dtype bf16] [--batch 32] [--routes cross] [--shapes C,H,W,N ...]

Compared in one run, on the same inputs (u shared by the K routes, delta/B/C in map order, D, delta_bias,
softplus, merge = sum over routes):
  ours_*    routed_selective_scan(backend="triton"): the kernels read/write through the index map;
  gather_*  gather K permuted copies -> our plain Triton selective_scan -> scatter back and sum;
  base_*    the same gather/scatter around mamba_ssm's CUDA selective_scan_fn (when it imports).
Medians of triton.testing.do_bench (ms); peak_mib = peak extra CUDA memory of one fwd+bwd step.
Writes benchmarks/results/routes_<gpu>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import torch
import triton
from triton.testing import do_bench

sys.path.insert(0, str(Path(__file__).parent))
from mamba_baseline import load_selective_scan_fn  # noqa: E402

from visionssm.ops.scan_routes import atrous_routes, cross_routes, routed_selective_scan, snake_routes  # noqa: E402
from visionssm.ops.selective_scan import selective_scan  # noqa: E402

# VMamba-T at 224: (C = d_inner, H, W, N) per stage; current VMamba-T (ssm_ratio 1, d_state 1) + v0 stage 1.
SHAPES = [(96, 56, 56, 1), (192, 28, 28, 1), (384, 14, 14, 1), (768, 7, 7, 1), (192, 56, 56, 16)]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
ROUTES = {"cross": cross_routes, "snake": snake_routes, "atrous": atrous_routes}


def make_inputs(batch, ch, K, L, nstate, dtype, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *s, dt=dtype: torch.randn(*s, generator=g, device="cuda", dtype=torch.float32).to(dt)
    return dict(
        u=r(batch, ch, L), delta=(r(batch, K * ch, L, dt=torch.float32) * 0.5 - 1).to(dtype),
        A=-(torch.rand(K * ch, nstate, generator=g, device="cuda") * 4 + 0.5),
        B=r(batch, K, nstate, L), C=r(batch, K, nstate, L), D=r(K * ch, dt=torch.float32),
        delta_bias=r(K * ch, dt=torch.float32) * 0.5,
    )


def gathered(scan, index):
    """Permuted copies -> plain scan of (batch, K*C, Lr) with K B/C groups -> scatter-add -> sum over routes."""
    K, lr = index.shape

    def fn(u, delta, A, B, C, D, delta_bias):
        batch, ch, lmap = u.shape
        take = lambda x, rows: x.gather(-1, index[None, :, None, :].expand(batch, K, rows, lr))
        xs = take(u[:, None].expand(batch, K, ch, lmap), ch).reshape(batch, K * ch, lr)
        dts = take(delta.view(batch, K, ch, lmap), ch).reshape(batch, K * ch, lr)
        Bs, Cs = take(B, B.shape[2]).contiguous(), take(C, C.shape[2]).contiguous()
        ys = scan(xs, dts, A, Bs, Cs, D=D, delta_bias=delta_bias, delta_softplus=True).view(batch, K, ch, lr)
        y = ys.new_zeros(batch, K, ch, lmap).scatter_add_(-1, index[None, :, None, :].expand_as(ys), ys)
        return y.sum(1)

    return fn


def time_fn(fn, inputs, backward):
    leaves = {k: v.detach().clone().requires_grad_(backward) for k, v in inputs.items()}
    if backward:
        grad = torch.randn_like(fn(**leaves))

        def step():
            fn(**leaves).backward(grad)
    else:

        def step():
            with torch.no_grad():
                fn(**leaves)

    ms = do_bench(step, warmup=25, rep=100, return_mode="median", grad_to_none=list(leaves.values()))
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return ms, (torch.cuda.max_memory_allocated() - before) / 2**20


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dtype", default="bf16", choices=list(DTYPES))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--routes", default="cross", choices=list(ROUTES))
    p.add_argument("--shapes", nargs="*", default=None, help="C,H,W,N entries")
    p.add_argument("--no-baseline", action="store_true", help="skip mamba_ssm (it may need minutes to build)")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    shapes = [tuple(int(v) for v in s.split(",")) for s in a.shapes] if a.shapes else SHAPES
    dtype = DTYPES[a.dtype]
    base = None if a.no_baseline else load_selective_scan_fn(verbose=False)
    dev = torch.cuda.get_device_name()
    records = []
    for ch, H, W, nstate in shapes:
        index = ROUTES[a.routes](H, W, device="cuda")
        K = index.shape[0]
        x = make_inputs(a.batch, ch, K, H * W, nstate, dtype)
        methods = {
            "ours": lambda index=index, **kw: routed_selective_scan(**kw, index=index, backend="triton"),
            "gather": gathered(lambda *args, **kw: selective_scan(*args, **kw, backend="triton"), index),
            "base": gathered(base, index) if base is not None else None,
        }
        rec = {"batch": a.batch, "C": ch, "H": H, "W": W, "N": nstate, "K": K, "routes": a.routes, "dtype": a.dtype}
        for mode, bwd in (("fwd", False), ("fwdbwd", True)):
            for name, fn in methods.items():
                ms, peak = time_fn(fn, x, bwd) if fn is not None else (None, None)
                rec[f"{name}_{mode}_ms"] = ms
                if bwd:
                    rec[f"{name}_{mode}_peak_mib"] = peak
            for name in ("gather", "base"):
                if rec[f"{name}_{mode}_ms"]:
                    rec[f"speedup_vs_{name}_{mode}"] = rec[f"{name}_{mode}_ms"] / rec[f"ours_{mode}_ms"]
        records.append(rec)
        del x
        torch.cuda.empty_cache()
    result = {
        "device": dev, "date": datetime.date.today().isoformat(), "torch": torch.__version__,
        "triton": triton.__version__, "baseline": "mamba_ssm selective_scan_fn on gathered copies" if base else None,
        "config": "u shared by routes, D, delta_bias, softplus, merge=True", "records": records,
    }
    fmt = lambda v: f"{v:9.3f}" if v is not None else f"{'-':>9}"
    print(f"{dev}  {a.dtype}  routes={a.routes}  batch={a.batch}  (times in ms, median)")
    print(f"{'C,H,W,N':<18}{'ours fwd':>9}{'gather':>9}{'mamba':>9} |{'ours f+b':>9}{'gather':>9}{'mamba':>9} |"
          f"{'MiB ours':>9}{'gather':>9}")
    for r in records:
        tag = ",".join(str(r[k]) for k in "CHWN")
        print(f"{tag:<18}{fmt(r['ours_fwd_ms'])}{fmt(r['gather_fwd_ms'])}"
              f"{fmt(r['base_fwd_ms'])} |{fmt(r['ours_fwdbwd_ms'])}{fmt(r['gather_fwdbwd_ms'])}"
              f"{fmt(r['base_fwdbwd_ms'])} |{r['ours_fwdbwd_peak_mib']:9.0f}{r['gather_fwdbwd_peak_mib']:9.0f}")
    gpu = dev.lower().replace("nvidia", "").strip().split()[0]
    out = Path(a.out) if a.out else Path(__file__).parent / "results" / f"routes_{gpu}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
