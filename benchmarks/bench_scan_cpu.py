"""CPU speed of the pure-PyTorch selective scan vs the sequential reference (forward and forward+backward).

    python benchmarks/bench_scan_cpu.py [--shape 8 384 197 16] [--reps 7]

Prints a table and writes benchmarks/results/scan_cpu.json (device, shapes, medians, ratios).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from visionssm.ops.selective_scan import selective_scan


def make(batch, dim, length, nstate, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)
    return dict(
        u=r(batch, dim, length), delta=r(batch, dim, length) - 1, A=-torch.rand(dim, nstate, generator=g) * 4,
        B=r(batch, 1, nstate, length), C=r(batch, 1, nstate, length), D=r(dim), z=r(batch, dim, length),
        delta_bias=r(dim) * 0.5,
    )


def median_ms(fn, reps):
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def bench(backend, inputs, reps, backward):
    leaves = {k: v.clone().requires_grad_(backward) for k, v in inputs.items()}

    def step():
        y = selective_scan(**leaves, delta_softplus=True, backend=backend)
        if backward:
            y.sum().backward()

    with torch.set_grad_enabled(backward):
        return median_ms(step, reps)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", type=int, nargs=4, default=[8, 384, 197, 16], metavar=("BATCH", "DIM", "L", "N"))
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--ref-reps", type=int, default=3)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "scan_cpu.json"))
    a = p.parse_args()
    inputs = make(*a.shape)
    rec = {"shape": a.shape, "dtype": "float32"}
    for mode, backward in (("fwd", False), ("fwdbwd", True)):
        rec[f"ours_{mode}_ms"] = bench("torch", inputs, a.reps, backward)
        rec[f"base_{mode}_ms"] = bench("reference", inputs, a.ref_reps, backward)
        rec[f"speedup_{mode}"] = rec[f"base_{mode}_ms"] / rec[f"ours_{mode}_ms"]
    result = {
        "device": f"{cpu_name()} ({torch.get_num_threads()} threads)",
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "baseline": "visionssm reference backend (sequential recurrence)",
        "records": [rec],
    }
    print(f"device: {result['device']}  torch {torch.__version__}  shape (batch, dim, L, N) = {tuple(a.shape)} fp32")
    print(f"{'pass':<8}{'torch ms':>12}{'reference ms':>15}{'ratio':>9}")
    for mode in ("fwd", "fwdbwd"):
        print(f"{mode:<8}{rec[f'ours_{mode}_ms']:>12.1f}{rec[f'base_{mode}_ms']:>15.1f}{rec[f'speedup_{mode}']:>8.1f}x")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
