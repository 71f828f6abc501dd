"""Host-side cost of one op call (cProfile), on a tiny problem so the GPU never limits: where the microseconds
between Python and the kernel launch go. Prints the top entries by own time.

    python benchmarks/profile_host.py [scan|scanfb|ssd|bidir] ...   (scanfb: forward + backward)
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

from visionssm.ops.selective_scan import bidirectional_selective_scan, selective_scan  # noqa: E402
from visionssm.ops.ssd import ssd_causal  # noqa: E402


def case(name):
    if name == "scan":
        x = make_inputs(2, 64, 16, 16, torch.bfloat16)
        return lambda: selective_scan(**x, delta_softplus=True, backend="triton")
    if name == "scanfb":
        x = make_inputs(2, 64, 16, 16, torch.bfloat16)
        leaves = {k: v.detach().clone().requires_grad_(True) for k, v in x.items()}
        grad = torch.randn_like(x["u"])
        return lambda: selective_scan(**leaves, delta_softplus=True, backend="triton").backward(grad)
    if name == "bidir":
        x = make_inputs(2, 64, 16, 16, torch.bfloat16)
        p = {k: (v, v.clone()) for k, v in x.items()}
        return lambda: bidirectional_selective_scan(p["u"], p["delta"], p["A"], p["B"], p["C"], p["D"], x["z"],
                                                    p["delta_bias"], delta_softplus=True)
    g = torch.Generator(device="cuda").manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, device="cuda")
    b, L, h, p, n = 2, 64, 12, 64, 64
    x = dict(x=r(b, L, h, p).bfloat16(), dt=r(b, L, h).bfloat16(), A=-r(h).abs(), B=r(b, L, 1, n).bfloat16(),
             C=r(b, L, 1, n).bfloat16(), D=r(h), dt_bias=r(h))
    return lambda: ssd_causal(**x, chunk_size=64, dt_softplus=True, backend="triton")


def main():
    for name in sys.argv[1:] or ["scan", "ssd", "bidir"]:
        fn = case(name)
        with torch.set_grad_enabled(name == "scanfb"):
            for _ in range(20):
                fn()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(300):
                fn()
            torch.cuda.synchronize()
            us = (time.perf_counter() - t0) / 300 * 1e6
            print(f"== {name}: {us:.0f} us per call", flush=True)
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(300):
                fn()
            prof.disable()
            torch.cuda.synchronize()
        pstats.Stats(prof).sort_stats("tottime").print_stats(22)


if __name__ == "__main__":
    main()
