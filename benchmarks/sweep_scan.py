"""Launch-configuration sweep of our Triton selective scan (H100 tuning aid; prints a table, no JSON).

    python benchmarks/sweep_scan.py  bd,chunk,warps[,programs] ...
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_scan import SHAPES, make_inputs, time_fn  # noqa: E402
from mamba_baseline import load_selective_scan_fn  # noqa: E402

from visionssm.ops.selective_scan import selective_scan  # noqa: E402


def main():
    cfgs = sys.argv[1:] or ["32,16,1"]
    base = load_selective_scan_fn(verbose=False)
    ours = lambda **kw: selective_scan(**kw, delta_softplus=True, backend="triton")
    print(f"{'shape':<22}" + "".join(f"{c:>22}" for c in cfgs) + f"{'mamba':>16}")
    for shape in SHAPES:
        x = make_inputs(*shape, torch.bfloat16)
        cells = []
        for c in cfgs:
            bd_chunk_warps = ",".join(c.split(",")[:3])
            os.environ["VISIONSSM_SCAN_CFG"] = bd_chunk_warps
            if len(c.split(",")) > 3:
                os.environ["VISIONSSM_SCAN_PROGRAMS"] = c.split(",")[3]
            else:
                os.environ.pop("VISIONSSM_SCAN_PROGRAMS", None)
            f, fb = time_fn(ours, x, False), time_fn(ours, x, True)
            cells.append(f"{f:9.3f}/{fb:9.3f}  ")
        mb = lambda **kw: base(**kw, delta_softplus=True)
        m = f"{time_fn(mb, x, False):7.3f}/{time_fn(mb, x, True):7.3f}" if base else "-"
        os.environ.pop("VISIONSSM_SCAN_CFG", None)
        print(f"{str(shape):<22}" + "".join(f"{s:>22}" for s in cells) + f"{m:>16}", flush=True)


if __name__ == "__main__":
    main()
