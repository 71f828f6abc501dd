"""Tuning sweep of the routed Triton scan on VMamba-T's four stage shapes, inputs laid out as in the model
(u and delta token-major: channels contiguous, as after LayerNorm2d / 1x1 convs in channels_last).
Prints a table (ms, forward / forward+backward), writes nothing. Each argument is one variant, a
';'-separated list of VISIONSSM_ROUTES_* settings, e.g. "SMALLN_CFG=32,32,4" or "SMALLN=0".

    python benchmarks/sweep_routes.py [--batch 128] VARIANT ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_routes import time_fn  # noqa: E402
from sweep_env import apply_variant  # noqa: E402

from visionssm.ops.scan_routes import cross_routes, routed_selective_scan  # noqa: E402

STAGES = [(96, 56, 56), (192, 28, 28), (384, 14, 14), (768, 7, 7)]  # VMamba-T (d_inner = dim, N = 1)


def model_inputs(batch, ch, H, W, nstate=1, K=4, dtype=torch.bfloat16, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, device="cuda")
    L = H * W
    return dict(
        u=r(batch, L, ch).to(dtype).transpose(1, 2),
        delta=(r(batch, L, K * ch) * 0.5 - 1).to(dtype).transpose(1, 2),
        A=-(torch.rand(K * ch, nstate, generator=g, device="cuda") * 4 + 0.5),
        B=r(batch, L, K, nstate).to(dtype).permute(0, 2, 3, 1), C=r(batch, L, K, nstate).to(dtype).permute(0, 2, 3, 1),
        D=r(K * ch), delta_bias=r(K * ch) * 0.5,
    )


def apply(variant: str):
    apply_variant("VISIONSSM_ROUTES_", variant)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--no-backward", action="store_true")
    p.add_argument("variants", nargs="*")
    a = p.parse_args()
    variants = a.variants or [""]
    for i, v in enumerate(variants):
        print(f"v{i}: {v or '(defaults)'}")
    print(f"{'stage (C,H,W)':<18}" + "".join(f"{'v' + str(i):>20}" for i in range(len(variants))))
    total = [0.0] * len(variants)
    for ch, H, W in STAGES:
        x = model_inputs(a.batch, ch, H, W)
        index = cross_routes(H, W, device="cuda")
        fn = lambda index=index, **kw: routed_selective_scan(
            **kw, index=index, out_dtype=torch.float32, backend="triton")
        cells = []
        for i, v in enumerate(variants):
            apply(v)
            f = time_fn(fn, x, False)[0]
            b = float("nan") if a.no_backward else time_fn(fn, x, True)[0]
            total[i] += f
            cells.append(f"{f:7.3f}/{b:7.3f}")
        apply("")
        print(f"{str((ch, H, W)):<18}" + "".join(f"{c:>20}" for c in cells), flush=True)
    print(f"{'sum fwd':<18}" + "".join(f"{t:>20.3f}" for t in total))


if __name__ == "__main__":
    main()
