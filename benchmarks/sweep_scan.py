"""Tuning sweep of our Triton selective scan (prints a table, no JSON). Each argument is one variant, a
';'-separated list of VISIONSSM_SCAN_* settings, e.g.  "CFG=32,16,1;PROGRAMS=2048" or "SMALLN_MAXN=16".

    python benchmarks/sweep_scan.py VARIANT ...
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_scan import SHAPES, make_inputs, time_fn  # noqa: E402
from mamba_baseline import load_selective_scan_fn  # noqa: E402
from sweep_env import apply_variant  # noqa: E402

from visionssm.ops.selective_scan import selective_scan  # noqa: E402


def apply(variant: str):
    apply_variant("VISIONSSM_SCAN_", variant)


def main():
    variants = sys.argv[1:] or [""]
    base = load_selective_scan_fn(verbose=False)
    ours = lambda **kw: selective_scan(**kw, delta_softplus=True, backend="triton")
    for i, v in enumerate(variants):
        print(f"v{i}: {v or '(defaults)'}")
    print(f"{'shape':<22}" + "".join(f"{'v' + str(i):>20}" for i in range(len(variants))) + f"{'mamba':>18}")
    for shape in SHAPES:
        x = make_inputs(*shape, torch.bfloat16)
        cells = []
        for v in variants:
            apply(v)
            cells.append(f"{time_fn(ours, x, False):7.3f}/{time_fn(ours, x, True):7.3f}")
        apply("")
        mb = lambda **kw: base(**kw, delta_softplus=True)
        m = f"{time_fn(mb, x, False):7.3f}/{time_fn(mb, x, True):7.3f}" if base else "-"
        print(f"{str(shape):<22}" + "".join(f"{c:>20}" for c in cells) + f"{m:>18}", flush=True)


if __name__ == "__main__":
    main()
