"""Host time of the selective scan's pieces on a tiny problem (the GPU never limits): one Triton launch of the
forward kernel, the torch ops around it, our whole call and mamba_ssm's for scale.

    python benchmarks/probe_launch.py [--profile]
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_scan import make_inputs  # noqa: E402
from mamba_baseline import load_selective_scan_fn  # noqa: E402

from visionssm.ops.selective_scan import selective_scan  # noqa: E402
from visionssm.ops.selective_scan import triton_scan as ts  # noqa: E402


def per_call_us(fn, n=400):
    for _ in range(30):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n * 1e6


def kernel_args(x):
    """The forward kernel's arguments as _TritonScan.forward builds them (no grad, one segment)."""
    u, delta, B, C = x["u"], x["delta"], ts._n_contiguous(x["B"][:, None]), ts._n_contiguous(x["C"][:, None])
    batch, dim, length = u.shape
    nstate = x["A"].shape[1]
    bd, bn, chunk, warps, seg_len, n_seg = ts.launch_config(batch, dim, dim, nstate, length)
    out = torch.empty_like(u)
    last = torch.empty(batch, nstate, dim, device="cuda")
    At = x["A"].t().contiguous()
    args = (u, delta, At, B, C, x["D"], x["z"], x["delta_bias"], out, last, last, last, last, u, delta, B, C,
            length, dim, dim, nstate, seg_len, n_seg, *u.stride(), *delta.stride(), *x["z"].stride(), *out.stride(),
            *B.stride(), *C.stride(), 0)
    flags = dict(HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True, REVERSE=False, SAVE_STARTS=False, CHUNK=chunk,
                 BLOCK_D=bd, BLOCK_N=bn, EVEN_N=True, T=8, LOG_T=3, STAGES=2, BIDIR=False, CARRY=False, FOLD=False,
                 ASM=True, num_warps=warps, MODE=0)
    return (batch, dim // bd, n_seg), args, flags


def main():
    x = make_inputs(2, 64, 16, 16, torch.bfloat16)
    base = load_selective_scan_fn(verbose=False)
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in x.items()}
    grad = torch.randn_like(x["u"])
    grid, args, flags = kernel_args(x)
    rows = {}
    rows["triton kernel[grid](...)"] = per_call_us(lambda: ts.selective_scan_fwd_kernel[grid](*args, **flags))
    small = torch.randn(16, 64, device="cuda")
    Bt = x["B"][:, None]
    rows["torch.empty (2,64,16) bf16"] = per_call_us(
        lambda: torch.empty(2, 64, 16, dtype=torch.bfloat16, device="cuda"))
    rows["torch.mul(A.t(), c, out=)"] = per_call_us(lambda: torch.mul(small.t(), 1.44, out=small.new_empty(64, 16)))
    rows["_n_contiguous(B) (bf16 -> f32)"] = per_call_us(lambda: ts._n_contiguous(Bt))
    rows["torch.zeros(4096) f32"] = per_call_us(lambda: torch.zeros(4096, device="cuda"))
    rows["tensor.to(bf16) (1024)"] = per_call_us(lambda: small.to(torch.bfloat16))
    with torch.no_grad():
        rows["ours fwd"] = per_call_us(lambda: selective_scan(**x, delta_softplus=True, backend="triton"))
    rows["ours fwd+bwd"] = per_call_us(
        lambda: selective_scan(**leaves, delta_softplus=True, backend="triton").backward(grad))
    if base is not None:
        with torch.no_grad():
            rows["mamba fwd"] = per_call_us(lambda: base(**x, delta_softplus=True))
        rows["mamba fwd+bwd"] = per_call_us(lambda: base(**leaves, delta_softplus=True).backward(grad))
    print(f"{torch.cuda.get_device_name()}  host us per call, tiny problem (2,64,16,16) bf16")
    for k, v in rows.items():
        print(f"  {k:<36}{v:8.1f}")
    if "--profile" in sys.argv:
        for name, fn in (("fwd", lambda: selective_scan(**x, delta_softplus=True, backend="triton")),
                         ("fwd+bwd", lambda: selective_scan(**leaves, delta_softplus=True, backend="triton")
                          .backward(grad))):
            with torch.set_grad_enabled(name != "fwd"):
                prof = cProfile.Profile()
                prof.enable()
                for _ in range(300):
                    fn()
                prof.disable()
            torch.cuda.synchronize()
            print(f"== cProfile ours {name}, 300 calls")
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
