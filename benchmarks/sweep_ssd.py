"""Tuning sweep of our Triton causal SSD (prints tables, no JSON): per-kernel times of one forward and one
forward+backward (torch.profiler), then forward / forward+backward medians for each variant.

A variant is a ';'-separated list of VISIONSSM_SSD_* settings, e.g. "CFG=32,4,4,1024,2048;STAGES=2,2".

    python benchmarks/sweep_ssd.py [--shapes 8,6085,12,64,64 ...] VARIANT ...
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_ssd import SHAPES, load_mamba_chunk_scan, make_inputs, time_fn  # noqa: E402
from sweep_env import apply_variant  # noqa: E402

from visionssm.ops.ssd import ssd_causal  # noqa: E402


def apply(variant: str):
    apply_variant("VISIONSSM_SSD_", variant)


def kernel_times(fn, inputs, backward):
    """(kernel, total ms, calls) of one call after warm-up, from torch.profiler: GPU time without the launch
    overhead that do_bench sees when the host is slower than the kernels."""
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
    rows.sort(key=lambda e: -e.self_device_time_total)
    return [(e.key, e.self_device_time_total / 1e3, e.count) for e in rows]


def host_us(fn, inputs, n=200):
    """Microseconds of host time per call (no grad), measured on a tiny problem so the GPU never limits."""
    with torch.no_grad():
        for _ in range(10):
            fn(**inputs)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            fn(**inputs)
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n * 1e6


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", nargs="*", default=None)
    p.add_argument("variants", nargs="*")
    a = p.parse_args()
    shapes = [tuple(int(v) for v in s.split(",")) for s in a.shapes] if a.shapes else SHAPES
    variants = a.variants or [""]
    ours = lambda **k: ssd_causal(**k, chunk_size=64, dt_softplus=True, backend="triton")
    # Host overhead first, before any profiler session.
    tiny = make_inputs(2, 64, 12, 64, 64, torch.bfloat16, False)
    print(f"host time per forward call at (2, 64, 12, 64, 64): ours {host_us(ours, tiny):.0f} us", flush=True)
    base_fn = load_mamba_chunk_scan()
    if base_fn is not None:
        base = lambda **k: base_fn(**k, chunk_size=64, dt_softplus=True)
        print(f"host time per forward call at (2, 64, 12, 64, 64): mamba_ssm {host_us(base, tiny):.0f} us")
    for shape in shapes:
        x = make_inputs(*shape, torch.bfloat16, False)
        # All do_bench timings first: a profiler session can leave launch hooks behind that slow the host.
        timed = {}
        for v in variants:
            apply(v)
            for bwd in (False, True):
                try:
                    timed[v, bwd] = f"{time_fn(ours, x, bwd):7.3f}"
                except Exception as e:  # noqa: BLE001 - a variant that does not compile is reported, not fatal
                    timed[v, bwd] = f"failed: {type(e).__name__}"
        print(f"shape {shape}: do_bench medians, and GPU kernel time of one call (profiler), ms")
        for v in variants:
            apply(v)
            cells = []
            for bwd in (False, True):
                gpu = "" if timed[v, bwd].startswith("failed") else \
                    f" (gpu {sum(ms for _, ms, _ in kernel_times(ours, x, bwd)):6.3f})"
                cells.append(timed[v, bwd] + gpu)
            print(f"  {v or '(defaults)':<36} fwd {cells[0]:<22} fwd+bwd {cells[1]}", flush=True)
        apply("")
        for bwd in (False, True):
            print(f"  kernels of one {'forward+backward' if bwd else 'forward'} (defaults):")
            for name, ms, count in kernel_times(ours, x, bwd)[:6]:
                print(f"    {name[:60]:<60} {ms:8.3f} ms  x{count}")
    print(f"host time per forward call after the profiler sessions: ours {host_us(ours, tiny):.0f} us")


if __name__ == "__main__":
    main()
