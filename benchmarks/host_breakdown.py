"""Host microseconds per call of the pieces of one selective-scan forward (tiny problem, GPU never limits):
the op as a whole (forward, and forward+backward), its Triton launch alone, the torch glue around it, and
mamba_ssm's whole call when importable. Prints a table.

    python benchmarks/host_breakdown.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_scan import make_inputs  # noqa: E402
from mamba_baseline import load_selective_scan_fn  # noqa: E402

from visionssm.ops.selective_scan import selective_scan, triton_scan  # noqa: E402
from visionssm.ops.selective_scan.triton_bc_layout import pack_bc  # noqa: E402
from visionssm.ops.ssd import ssd_causal, triton_causal  # noqa: E402


def per_call(fn, n=2000):
    for _ in range(50):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n * 1e6


def captured_launch(kernel, call):
    """(kernel launch alone, through Triton's own JITFunction.run) of the last launch of ``kernel`` made by
    ``call`` (run with VISIONSSM_FAST_LAUNCH=0, so that the launch reaches JITFunction.run)."""
    seen = {}
    orig = kernel.run

    def spy(*a, **k):
        seen["a"], seen["k"] = a, dict(k)
        return orig(*a, **k)

    kernel.run = spy
    try:
        with mock.patch.dict(os.environ, VISIONSSM_FAST_LAUNCH="0"):
            call()
    finally:
        kernel.run = orig
    a, k = seen["a"], seen["k"]
    return lambda: orig(*a, **k)


def main():
    x = make_inputs(2, 64, 16, 16, torch.bfloat16)
    A = x["A"]
    rows = []
    with torch.no_grad():
        scan = lambda: selective_scan(**x, delta_softplus=True, backend="triton")
        rows.append(("selective_scan (whole op)", per_call(scan)))
        direct = lambda: triton_scan.selective_scan_triton(**x, delta_softplus=True)
        rows.append(("selective_scan_triton (no checks)", per_call(direct)))
        launch = captured_launch(triton_scan.selective_scan_fwd_kernel, scan)
        rows.append(("  fwd kernel launch, Triton's path", per_call(launch)))
        rows.append(("  (A * LOG2E).t().contiguous()", per_call(lambda: (A * 1.4427).t().contiguous())))
        rows.append(("  pack_bc((B, C))", per_call(lambda: pack_bc((x["B"], x["C"])))))
        rows.append(("  torch.empty", per_call(lambda: torch.empty(2, 64, 16, device="cuda"))))
        rows.append(("  launch_config", per_call(lambda: triton_scan.launch_config(2, 64, 64, 16, 16))))
        g = torch.Generator(device="cuda").manual_seed(0)
        r = lambda *s: torch.randn(*s, generator=g, device="cuda")
        b, L, h, p, n = 2, 64, 12, 64, 64
        s = dict(x=r(b, L, h, p).bfloat16(), dt=r(b, L, h).bfloat16(), A=-r(h).abs(), B=r(b, L, 1, n).bfloat16(),
                 C=r(b, L, 1, n).bfloat16(), D=r(h), dt_bias=r(h))
        ssd = lambda: ssd_causal(**s, chunk_size=64, dt_softplus=True, backend="triton")
        rows.append(("ssd_causal (whole op)", per_call(ssd)))
        launch = captured_launch(triton_causal.ssd_causal_fwd_kernel, ssd)
        rows.append(("  fwd kernel launch, Triton's path", per_call(launch)))
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in x.items()}
    grad = torch.randn_like(x["u"])
    fb = lambda: selective_scan(**leaves, delta_softplus=True, backend="triton").backward(grad)
    rows.append(("selective_scan forward+backward", per_call(fb, n=500)))
    base = load_selective_scan_fn(verbose=False)
    if base is not None:
        with torch.no_grad():
            rows.append(("mamba_ssm selective_scan_fn (whole op)", per_call(lambda: base(**x, delta_softplus=True))))
        rows.append(("mamba_ssm forward+backward",
                     per_call(lambda: base(**leaves, delta_softplus=True).backward(grad), n=500)))
    for name, us in rows:
        print(f"{name:<42} {us:8.1f} us")


if __name__ == "__main__":
    main()
