"""Tuning sweep of our Triton causal SSD (prints tables, no JSON): per-kernel times of one forward and one
forward+backward (torch.profiler), then forward / forward+backward medians for each variant.

A variant is a ';'-separated list of VISIONSSM_SSD_* settings, e.g. "CFG=32,4,4,1024,2048;STAGES=2,2".

    python benchmarks/sweep_ssd.py [--shapes 8,6085,12,64,64 ...] VARIANT ...
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_ssd import SHAPES, make_inputs, time_fn  # noqa: E402

from visionssm.ops.ssd import ssd_causal  # noqa: E402


def apply(variant: str):
    for k in [k for k in os.environ if k.startswith("VISIONSSM_SSD_")]:
        del os.environ[k]
    for item in filter(None, variant.split(";")):
        k, v = item.split("=", 1)
        os.environ[f"VISIONSSM_SSD_{k}"] = v


def kernel_table(fn, inputs, backward):
    leaves = {k: v.detach().clone().requires_grad_(backward and v.is_floating_point()) for k, v in inputs.items()}
    for _ in range(3):
        y = fn(**leaves)
        if backward:
            y.backward(torch.ones_like(y))
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        with torch.set_grad_enabled(backward):
            y = fn(**leaves)
            if backward:
                y.backward(torch.ones_like(y))
        torch.cuda.synchronize()
    rows = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    for e in sorted(rows, key=lambda e: -e.self_device_time_total)[:8]:
        print(f"    {e.key[:60]:<60} {e.self_device_time_total / 1e3:8.3f} ms  x{e.count}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", nargs="*", default=None)
    p.add_argument("variants", nargs="*")
    a = p.parse_args()
    shapes = [tuple(int(v) for v in s.split(",")) for s in a.shapes] if a.shapes else SHAPES
    variants = a.variants or [""]
    ours = lambda **k: ssd_causal(**k, chunk_size=64, dt_softplus=True, backend="triton")
    for shape in shapes:
        x = make_inputs(*shape, torch.bfloat16, False)
        apply("")
        print(f"shape {shape}: kernels of one forward (defaults)")
        kernel_table(ours, x, False)
        print(f"shape {shape}: kernels of one forward+backward (defaults)")
        kernel_table(ours, x, True)
        for v in variants:
            apply(v)
            try:
                f, fb = time_fn(ours, x, False), time_fn(ours, x, True)
                print(f"  {v or '(defaults)':<40} fwd {f:7.3f} ms   fwd+bwd {fb:7.3f} ms", flush=True)
            except Exception as e:  # noqa: BLE001 - a variant that does not compile is reported, not fatal
                print(f"  {v:<40} failed: {type(e).__name__}: {str(e)[:120]}", flush=True)
        apply("")


if __name__ == "__main__":
    main()
