"""Inference throughput (img/s) and peak memory of models, ours and timm baselines, in one run.

    python benchmarks/bench_models.py [--models vim_tiny_patch16_224 deit_tiny_patch16_224] [--batch 128]
        [--img-size 224] [--dtype bf16] [--device cuda]

Median over timed iterations after warm-up (CUDA events via triton.testing.do_bench on GPU, a wall clock
on CPU). Writes benchmarks/results/models_<device>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time
from pathlib import Path

import timm
import torch

import visionssm  # noqa: F401  (registers our models)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def measure(model, x, device, dtype, reps):
    amp = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def step():
        with torch.inference_mode(), amp:
            model(x)

    if device.type == "cuda":
        from triton.testing import do_bench

        torch.cuda.reset_peak_memory_stats()
        ms = do_bench(step, warmup=100, rep=500, return_mode="median")
        return ms, torch.cuda.max_memory_allocated() / 2**30
    step()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        step()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), None


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["vim_tiny_patch16_224", "vim_small_patch16_224",
                                                    "deit_tiny_patch16_224", "deit_small_patch16_224"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--dtype", default="bf16", choices=list(DTYPES))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    device, dtype = torch.device(a.device), DTYPES[a.dtype]
    x = torch.randn(a.batch, 3, a.img_size, a.img_size, device=device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    records = []
    for m in a.models:
        model = timm.create_model(m, img_size=a.img_size).to(device).eval()
        params = sum(p.numel() for p in model.parameters())
        ms, mem = measure(model, x, device, dtype, a.reps)
        rec = {"model": m, "params": params, "batch": a.batch, "img_size": a.img_size, "dtype": a.dtype,
               "median_ms": ms, "img_per_s": a.batch / (ms * 1e-3), "peak_mem_gib": mem}
        records.append(rec)
        print(f"{m:<32}{params / 1e6:8.2f}M{ms:10.2f} ms{rec['img_per_s']:10.0f} img/s"
              + (f"{mem:8.2f} GiB" if mem is not None else ""))
        del model
    result = {"device": name, "date": datetime.date.today().isoformat(), "torch": torch.__version__,
              "records": records}
    tag = name.lower().replace("nvidia", "").strip().split()[0]
    out = Path(a.out) if a.out else Path(__file__).parent / "results" / f"models_{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
