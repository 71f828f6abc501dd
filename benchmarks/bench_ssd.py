"""GPU benchmark of the causal SSD: ours (Triton) vs mamba_ssm's mamba_chunk_scan_combined vs fla's chunk_simple_gla.

    python benchmarks/bench_ssd.py [--dtype bf16] [--shapes 64,197,12,64,64 ...] [--sweep] [--z] [--budget S]

Shapes are (batch, L, heads, headdim, N), one B/C group. Config: D skip (per head), dt_bias, softplus (Mamba-2's);
``--z`` adds the silu gate. Times are medians of triton.testing.do_bench (CUDA events), forward and
forward+backward. mamba_ssm is timed at chunk 64, then at 256 when time allows; the faster is ``base``.
fla gets the SSD mapped onto gated linear attention outside the timed region (q = C and k = B expanded to heads,
v = x * dt, g = dt * A, scale 1), so its times leave out that mapping and the D skip. The non-causal op (VSSD) is
timed against its matmul form in the input dtype (what VSSD's code runs) at VSSD-T's stage shapes, batch 128;
HSM-SSD (EfficientViM) likewise at EfficientViM-M3's stage shapes, batch 256.
``--sweep`` also times launch configurations of ours (VISIONSSM_SSD_CFG). ``--budget`` seconds bounds the run:
optional phases are skipped past it, and the JSON is rewritten after every step, so a run cut short keeps what it
measured. Writes benchmarks/results/ssd_<gpu>.json.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import importlib
import json
import os
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F
import triton
from triton.testing import do_bench

from visionssm.ops.ssd import hsm_ssd, ssd_causal, ssd_noncausal
from visionssm.ops.ssd.chunked import hsm_ssd_matmul, ssd_noncausal_matmul

SHAPES = [(64, 197, 12, 64, 64), (8, 6085, 12, 64, 64)]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
ROOT = Path(__file__).resolve().parents[1]
DEVICE = "cuda"
NC_SHAPES = [(128, 3136, 2, 64, 64), (128, 784, 4, 64, 64), (128, 196, 8, 64, 64)]  # VSSD-T stages 1-3
HSM_SHAPES = [(256, 224, 196, 49), (256, 320, 49, 25), (256, 512, 16, 9)]  # EfficientViM-M3 stages (B, dim, L, N)
SWEEP = ["32,8,8,512", "64,4,8,512", "64,8,8,512", "16,4,8,512", "32,4,4,512", "32,4,8,256", "32,4,8,1024",
         "32,4,8,2048", "32,4,4,2048", "16,4,4,2048", "16,4,8,4096"]


def load_mamba_chunk_scan():
    """mamba_chunk_scan_combined from an installed mamba_ssm, else from the vendored source tree with an empty
    package __init__ (as benchmarks/mamba_baseline.py does); None when neither imports."""
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined

        return mamba_chunk_scan_combined
    except Exception:
        pass
    env = os.environ.get("MAMBA_SRC")
    roots = [env] if env else sorted(glob.glob(str(ROOT / ".vendor" / "mamba_ssm-*/")))
    for root in roots:
        if not (Path(root) / "mamba_ssm" / "ops" / "triton" / "ssd_combined.py").is_file():
            continue
        if "mamba_ssm" not in sys.modules:
            pkg = types.ModuleType("mamba_ssm")
            pkg.__path__ = [str(Path(root) / "mamba_ssm")]
            sys.modules["mamba_ssm"] = pkg
        try:
            return importlib.import_module("mamba_ssm.ops.triton.ssd_combined").mamba_chunk_scan_combined
        except Exception as e:  # noqa: BLE001 - report and run without the baseline
            print(f"mamba_ssm SSD baseline unavailable: {type(e).__name__}: {e}", file=sys.stderr)
    return None


def load_fla():
    """fla's chunk_simple_gla when installed, else from an unpacked fla-core wheel in .vendor/fla_core-*/."""
    for path in [None] + sorted(glob.glob(str(ROOT / ".vendor" / "fla_core-*/"))):
        if path and (Path(path) / "fla").is_dir() and path not in sys.path:
            sys.path.insert(0, path)
        try:
            from fla.ops.simple_gla import chunk_simple_gla

            return chunk_simple_gla
        except Exception:
            continue
    return None


def make_inputs(batch, length, heads, headdim, nstate, dtype, with_z, seed=0):
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    r = lambda *s, dt=dtype: torch.randn(*s, generator=g, device=DEVICE, dtype=torch.float32).to(dt)
    x = dict(
        x=r(batch, length, heads, headdim), dt=(r(batch, length, heads, dt=torch.float32) * 0.5 - 1).to(dtype),
        A=-(torch.rand(heads, generator=g, device=DEVICE) * 4 + 0.5),
        B=r(batch, length, 1, nstate), C=r(batch, length, 1, nstate), D=r(heads, dt=torch.float32),
        dt_bias=r(heads, dt=torch.float32) * 0.5,
    )
    if with_z:
        x["z"] = r(batch, length, heads, headdim)
    return x


def make_hsm_inputs(batch, dim, length, nstate, dtype, seed=0):
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, device=DEVICE).to(dtype)
    return dict(x=r(batch, dim, length), dt=r(batch, nstate, length), B=r(batch, nstate, length),
                C=r(batch, nstate, length), W_hz=r(2 * dim, dim) / dim**0.5, W_out=r(dim, dim) / dim**0.5,
                D=torch.ones(1, device=DEVICE), A=torch.rand(nstate, generator=g, device=DEVICE) * 15 + 1)


def fla_inputs(x):
    heads = x["x"].shape[2]
    dt = F.softplus(x["dt"].float() + x["dt_bias"])
    return dict(
        q=x["C"].expand(-1, -1, heads, -1).contiguous(), k=x["B"].expand(-1, -1, heads, -1).contiguous(),
        v=(x["x"].float() * dt[..., None]).to(x["x"].dtype), g=(dt * x["A"]).contiguous(),
    )


def time_fn(fn, inputs, backward):
    grad_leaves = {k for k, v in inputs.items() if v.is_floating_point()} if backward else set()
    leaves = {k: v.detach().clone().requires_grad_(k in grad_leaves) for k, v in inputs.items()}
    if backward:
        grad = torch.randn_like(fn(**leaves))

        def step():
            fn(**leaves).backward(grad)
    else:

        def step():
            with torch.no_grad():
                fn(**leaves)

    return do_bench(step, warmup=25, rep=200, return_mode="median", grad_to_none=list(leaves.values()))


def rel_diff(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def summarize(rec):
    for mode in ("fwd", "fwdbwd"):
        times = [v for k, v in rec.items() if k.startswith("base_chunk") and k.endswith(f"_{mode}_ms")]
        rec[f"base_{mode}_ms"] = min(times) if times else None
        if rec[f"base_{mode}_ms"] and rec.get(f"ours_{mode}_ms"):
            rec[f"speedup_vs_base_{mode}"] = rec[f"base_{mode}_ms"] / rec[f"ours_{mode}_ms"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dtype", default="bf16", choices=list(DTYPES))
    p.add_argument("--shapes", nargs="*", default=None, help="batch,L,heads,headdim,N entries")
    p.add_argument("--z", action="store_true", help="with the silu(z) gate")
    p.add_argument("--sweep", action="store_true", help="also time launch configurations of ours")
    p.add_argument("--torch", action="store_true", help="also time our pure-PyTorch path")
    p.add_argument("--configs", nargs="*", default=None, help="with --sweep: VISIONSSM_SSD_CFG values to time")
    p.add_argument("--no-fla", action="store_true", help="skip fla even when it imports")
    p.add_argument("--no-noncausal", action="store_true", help="skip the non-causal (VSSD) and HSM timings")
    p.add_argument("--budget", type=float, default=1e9,
                   help="seconds; later phases (fla, non-causal, mamba chunk 256, sweep) are skipped past it")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    t_end = time.time() + a.budget
    shapes = [tuple(int(v) for v in s.split(",")) for s in a.shapes] if a.shapes else SHAPES
    dtype = DTYPES[a.dtype]
    kw = dict(chunk_size=64, dt_softplus=True)
    ours = lambda **k: ssd_causal(**k, **kw, backend="triton")
    torch_path = lambda **k: ssd_causal(**k, **kw, backend="torch")
    base_fn = load_mamba_chunk_scan()
    fla_fn = None if a.no_fla else load_fla()
    base = lambda q: (lambda **k: base_fn(**k, chunk_size=q, dt_softplus=True))
    fla = (lambda **k: fla_fn(**k, scale=1.0)[0]) if fla_fn else None
    dev = torch.cuda.get_device_name()
    gpu = dev.lower().replace("nvidia", "").strip().split()[0]
    out = Path(a.out) if a.out else Path(__file__).parent / "results" / f"ssd_{gpu}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "device": dev, "date": datetime.date.today().isoformat(), "torch": torch.__version__,
        "triton": triton.__version__,
        "baseline": "mamba_ssm 2.3.2.post1 mamba_chunk_scan_combined (best chunk size timed)" if base_fn else None,
        "fla": "fla chunk_simple_gla (inputs pre-mapped, no D skip)" if fla else None,
        "config": "D per head, dt_bias, softplus" + (", z gate" if a.z else "") + "; 1 group; ours chunk_size=64",
        "records": [], "noncausal": "ours (Triton) vs base = matmul form in the input dtype (VSSD's code path)",
        "noncausal_records": [], "hsm": "ours (Triton state build + cuBLAS) vs base = matmul form in the input dtype",
        "hsm_records": [], "skipped": [],
    }

    def save():
        out.write_text(json.dumps(result, indent=2) + "\n")

    def phase(name, enabled=True):
        """True when the phase should run; records a skip past the time budget."""
        if enabled and time.time() > t_end:
            result["skipped"].append(name)
        return enabled and time.time() <= t_end

    inputs = {shape: make_inputs(*shape, dtype, a.z) for shape in shapes}
    recs = {shape: {"shape": list(shape), "dtype": a.dtype, "z": a.z} for shape in shapes}
    result["records"] = list(recs.values())
    for chunk in (64, 256):  # ours first; mamba at chunk 64, then (time allowing) at 256
        if chunk == 256 and not phase("mamba chunk 256", base_fn is not None):
            continue
        for shape, x in inputs.items():
            rec = recs[shape]
            if chunk == 64:
                for mode, bwd in (("fwd", False), ("fwdbwd", True)):
                    rec[f"ours_{mode}_ms"] = time_fn(ours, x, bwd)
            if base_fn is not None:
                rec[f"rel_diff_vs_base_chunk{chunk}"] = rel_diff(ours(**x), base(chunk)(**x))
                for mode, bwd in (("fwd", False), ("fwdbwd", True)):
                    rec[f"base_chunk{chunk}_{mode}_ms"] = time_fn(base(chunk), x, bwd)
            summarize(rec)
            save()
        if chunk == 64 and phase("fla", fla is not None):
            for shape, x in inputs.items():
                fx = fla_inputs(x)
                for mode, bwd in (("fwd", False), ("fwdbwd", True)):
                    try:  # fla refuses some Triton/GPU pairs (e.g. its gated backward on Hopper with Triton 3.6)
                        recs[shape][f"fla_{mode}_ms"] = time_fn(fla, fx, bwd)
                    except RuntimeError as e:
                        recs[shape][f"fla_{mode}_ms"] = None
                        recs[shape][f"fla_{mode}_error"] = str(e).splitlines()[0][:200]
                        print(f"fla {mode} {shape}: {recs[shape][f'fla_{mode}_error']}", flush=True)
                del fx
                save()
        if chunk == 64 and phase("non-causal", not a.no_noncausal):
            for shape in NC_SHAPES:
                x = make_inputs(*shape, dtype, False)
                x.pop("dt_bias")
                x["A"] = -x["A"]  # VSSD's positive weights dt * exp(A_log)
                nc_ours = lambda **k: ssd_noncausal(**k, dt_softplus=True, backend="triton")
                nc_base = lambda **k: ssd_noncausal_matmul(**k, dt_softplus=True, dtype=k["x"].dtype)
                rec = {"shape": list(shape), "dtype": a.dtype, "rel_diff_vs_base": rel_diff(nc_ours(**x), nc_base(**x))}
                for mode, bwd in (("fwd", False), ("fwdbwd", True)):
                    rec[f"ours_{mode}_ms"] = time_fn(nc_ours, x, bwd)
                    rec[f"base_{mode}_ms"] = time_fn(nc_base, x, bwd)
                result["noncausal_records"].append(rec)
                del x
                torch.cuda.empty_cache()
                save()
    if phase("hsm", not a.no_noncausal):
        for batch, dim, length, nstate in HSM_SHAPES:
            x = make_hsm_inputs(batch, dim, length, nstate, dtype)
            h_ours = lambda **k: hsm_ssd(**k, backend="triton")[0]
            h_base = lambda **k: hsm_ssd_matmul(**k, dtype=k["x"].dtype)[0]
            rec = {"shape": [batch, dim, length, nstate], "dtype": a.dtype,
                   "rel_diff_vs_base": rel_diff(h_ours(**x), h_base(**x))}
            for mode, bwd in (("fwd", False), ("fwdbwd", True)):
                rec[f"ours_{mode}_ms"] = time_fn(h_ours, x, bwd)
                rec[f"base_{mode}_ms"] = time_fn(h_base, x, bwd)
            result["hsm_records"].append(rec)
            save()
    if a.torch and phase("torch path"):
        for shape, x in inputs.items():
            for mode, bwd in (("fwd", False), ("fwdbwd", True)):
                recs[shape][f"torch_{mode}_ms"] = time_fn(torch_path, x, bwd)
            save()
    for cfg in (a.configs or SWEEP) if a.sweep else []:
        if not phase(f"sweep {cfg}"):
            continue
        os.environ["VISIONSSM_SSD_CFG"] = cfg
        for shape, x in inputs.items():
            sweep = recs[shape].setdefault("sweep", {})
            try:  # some configurations do not compile (e.g. chunk 64 tiles on some Triton versions)
                sweep[cfg] = {m: time_fn(ours, x, b) for m, b in (("fwd_ms", False), ("fwdbwd_ms", True))}
            except RuntimeError as e:
                sweep[cfg] = {"error": str(e).splitlines()[0][:200]}
        os.environ.pop("VISIONSSM_SSD_CFG")
        save()
    save()
    fmt = lambda v: f"{v:9.3f}" if v is not None else f"{'-':>9}"
    ratio = lambda o, b: f"{b / o:6.2f}x" if b else f"{'-':>7}"
    print(f"{dev}  {a.dtype}  (times in ms, median)")
    print(f"{'shape (B,L,H,P,N)':<24}{'ours fwd':>9}{'mamba':>9}{'ratio':>8}{'fla':>9} |"
          f"{'ours f+b':>9}{'mamba':>9}{'ratio':>8}{'fla':>9}")
    for r in result["records"]:
        print(f"{str(tuple(r['shape'])):<24}{fmt(r['ours_fwd_ms'])}{fmt(r.get('base_fwd_ms'))}"
              f"{ratio(r['ours_fwd_ms'], r.get('base_fwd_ms'))}{fmt(r.get('fla_fwd_ms'))} |"
              f"{fmt(r['ours_fwdbwd_ms'])}{fmt(r.get('base_fwdbwd_ms'))}"
              f"{ratio(r['ours_fwdbwd_ms'], r.get('base_fwdbwd_ms'))}{fmt(r.get('fla_fwdbwd_ms'))}")
        for cfg, t in r.get("sweep", {}).items():
            if "error" in t:
                print(f"   cfg {cfg:<16} {t['error']}")
            else:
                print(f"   cfg {cfg:<16} fwd {t['fwd_ms']:.3f}  fwd+bwd {t['fwdbwd_ms']:.3f}")
    for r in result["noncausal_records"]:
        print(f"non-causal {str(tuple(r['shape'])):<24} fwd {r['ours_fwd_ms']:.3f} vs matmul {r['base_fwd_ms']:.3f}"
              f" | fwd+bwd {r['ours_fwdbwd_ms']:.3f} vs matmul {r['base_fwdbwd_ms']:.3f}")
    for r in result["hsm_records"]:
        print(f"hsm {str(tuple(r['shape'])):<31} fwd {r['ours_fwd_ms']:.3f} vs matmul {r['base_fwd_ms']:.3f}"
              f" | fwd+bwd {r['ours_fwdbwd_ms']:.3f} vs matmul {r['base_fwdbwd_ms']:.3f}")
    if result["skipped"]:
        print("skipped (time budget):", ", ".join(result["skipped"]))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
