"""Host-side profile (cProfile) of one eager model forward: which Python calls the time between kernel
launches goes to. Prints the top entries by cumulative and by own time.

    python benchmarks/profile_model_host.py [model] [--batch 128]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import timm
import torch

import visionssm.models  # noqa: F401  (registers the models)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", default="vmamba_tiny_s1l8")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--top", type=int, default=30)
    a = p.parse_args()
    m = timm.create_model(a.model).cuda().eval()
    x = torch.randn(a.batch, 3, 224, 224, device="cuda")
    with torch.no_grad(), torch.autocast("cuda", torch.bfloat16):
        for _ in range(3):
            m(x)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(5):
            m(x)
        t1 = time.perf_counter()
        torch.cuda.synchronize()
        wall = (time.perf_counter() - t0) / 5 * 1e3
        # Enqueue time equals wall time when the host limits (or the launch queue fills and blocks it).
        print(f"ms per forward: enqueue {(t1 - t0) / 5 * 1e3:.2f}, wall {wall:.2f}")
        prof = cProfile.Profile()
        prof.enable()
        m(x)
        prof.disable()
        torch.cuda.synchronize()
    st = pstats.Stats(prof)
    st.sort_stats("cumulative").print_stats(a.top)
    st.sort_stats("tottime").print_stats(a.top)


if __name__ == "__main__":
    main()
