"""Where the time of one selective-scan call goes on the GPU: wall time (do_bench median), host time per
call (Python side, no synchronisation) and device time per kernel (torch.profiler), for ours and, when
importable, mamba_ssm's selective_scan_fn, at the bench_scan.py shapes. Prints a table, writes no JSON.

    python benchmarks/kernel_breakdown.py [--shapes 128,384,197,16 ...] [--top 6] [--no-base]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_scan import SHAPES, kernel_times_ms, make_inputs, time_fn  # noqa: E402
from mamba_baseline import load_selective_scan_fn  # noqa: E402

from visionssm.ops.selective_scan import selective_scan  # noqa: E402


def host_ms(fn, inputs, calls=50):
    """Mean Python-side time of a forward call (the GPU queue is not waited on)."""
    with torch.no_grad():
        fn(**inputs)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn(**inputs)
        ms = (time.perf_counter() - t0) / calls * 1e3
    torch.cuda.synchronize()
    return ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", nargs="*", default=None, help="batch,dim,L,N ...")
    ap.add_argument("--top", type=int, default=6)
    ap.add_argument("--no-base", action="store_true", help="skip mamba_ssm")
    args = ap.parse_args()
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes] if args.shapes else SHAPES[:4]
    base = None if args.no_base else load_selective_scan_fn(verbose=False)
    impls = {"ours": lambda **kw: selective_scan(**kw, delta_softplus=True, backend="triton")}
    if base is not None:
        impls["mamba"] = lambda **kw: base(**kw, delta_softplus=True)
    print(f"device: {torch.cuda.get_device_name()}")
    for shape in shapes:
        x = make_inputs(*shape, torch.bfloat16)
        for name, fn in impls.items():
            wall = time_fn(fn, x, False)
            host = host_ms(fn, x)
            per = kernel_times_ms(fn, x, True, keep_grads=True)  # grad accumulation counted
            print(f"{str(shape):<22} {name:<6} wall fwd {wall:.3f} ms  host fwd {host:.3f} ms  "
                  f"device f+b {sum(per.values()):.3f} ms")
            for k, v in sorted(per.items(), key=lambda kv: -kv[1])[: args.top]:
                print(f"    {v:7.3f}  {k[:100]}")


if __name__ == "__main__":
    main()
