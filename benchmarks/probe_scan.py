"""Where the selective scan's time goes (prints tables, no JSON): do_bench medians next to the GPU kernel time
of one call (torch.profiler) for ours and mamba_ssm, and host microseconds per call on a tiny problem.

    python benchmarks/probe_scan.py [--shapes 128,384,197,16 ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_scan import SHAPES, make_inputs, time_fn  # noqa: E402
from mamba_baseline import load_selective_scan_fn  # noqa: E402
from sweep_ssd import host_us, kernel_times  # noqa: E402

from visionssm.ops.selective_scan import selective_scan  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", nargs="*", default=None)
    a = p.parse_args()
    shapes = [tuple(int(v) for v in s.split(",")) for s in a.shapes] if a.shapes else SHAPES[:4]
    ours = lambda **kw: selective_scan(**kw, delta_softplus=True, backend="triton")
    base_fn = load_selective_scan_fn(verbose=False)
    fns = {"ours": ours}
    if base_fn is not None:
        fns["mamba"] = lambda **kw: base_fn(**kw, delta_softplus=True)
    tiny = make_inputs(2, 64, 16, 16, torch.bfloat16)
    for name, fn in fns.items():
        print(f"host us per forward call at (2, 64, 16, 16): {name} {host_us(fn, tiny):.0f}", flush=True)
    for shape in shapes:
        x = make_inputs(*shape, torch.bfloat16)
        timed = {(n, b): time_fn(fn, x, b) for n, fn in fns.items() for b in (False, True)}
        print(f"shape {shape}: do_bench ms (GPU kernel ms of one call)")
        for n, fn in fns.items():
            cells = []
            for b in (False, True):
                ks = kernel_times(fn, x, b)
                cells.append(f"{timed[n, b]:7.3f} ({sum(ms for _, ms, _ in ks):6.3f})")
            print(f"  {n:<6} fwd {cells[0]}   fwd+bwd {cells[1]}", flush=True)
            for k, ms, c in kernel_times(fn, x, True)[:6]:
                print(f"      {k[:56]:<56} {ms:7.3f} ms x{c}")


if __name__ == "__main__":
    main()
