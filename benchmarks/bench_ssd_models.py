"""Inference throughput (img/s) and peak memory of EfficientViM-M1..M4 and VSSD-T vs timm baselines, one run.

    python benchmarks/bench_ssd_models.py [--batch 256] [--img-size 224] [--dtype bf16] [--compile]
        [--ours visionssm_efficientvim_m1 ...] [--base efficientvit_m0 ...] [--extra vssd_tiny@torch ...]

Every model runs on the same random batch under ``torch.inference_mode`` and autocast. Timing: CUDA events
around each iteration after warm-up, median over ``--iters`` (a wall clock on CPU). Peak memory: the allocator's
peak during the timed iterations (weights included). One record per configuration, holding
every model of the run as ``ours_<name>`` / ``base_<name>`` (DESIGN.md). Writes
benchmarks/results/ssd_models_<gpu>.json (and copies it to $OUT when set).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import time
from pathlib import Path

import timm
import torch

import visionssm  # noqa: F401  (registers our models)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
OURS = ["visionssm_efficientvim_m1", "visionssm_efficientvim_m2", "visionssm_efficientvim_m3",
        "visionssm_efficientvim_m4", "vssd_tiny"]
BASE = ["efficientvit_m0", "efficientvit_m1", "efficientvit_m2", "efficientvit_m3", "efficientvit_m4",
        "efficientvit_m5", "mobilenetv4_conv_small", "swin_tiny_patch4_window7_224",
        "efficientvim_m1", "efficientvim_m2", "efficientvim_m3", "efficientvim_m4"]  # timm's own EfficientViM port
# run last (the most important rows first, in case a time limit cuts the run): "name@backend" pins the SSD op
# backend (default: triton on CUDA); these time the torch (matmul) paths of the same models
EXTRA = ["visionssm_efficientvim_m1@torch", "vssd_tiny@torch"]


def time_model(model, x, dtype, warmup: int, iters: int) -> tuple[float, float | None]:
    """-> (median ms per batch, peak GiB allocated) for ``model(x)``."""
    amp = torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32)

    def step():
        with torch.inference_mode(), amp:
            model(x)

    for _ in range(warmup):
        step()
    times = []
    if x.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
        for start, end in events:
            start.record()
            step()
            end.record()
        torch.cuda.synchronize()
        times = [s.elapsed_time(e) for s, e in events]
        return statistics.median(times), torch.cuda.max_memory_allocated() / 2**30
    for _ in range(iters):
        t = time.perf_counter()
        step()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), None


def save(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    if os.environ.get("OUT"):
        shutil.copy(out, Path(os.environ["OUT"]) / out.name)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ours", nargs="+", default=OURS)
    p.add_argument("--base", nargs="+", default=BASE)
    p.add_argument("--extra", nargs="*", default=EXTRA, help="our models timed after the baselines")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--dtype", default="bf16", choices=list(DTYPES))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--compile", action="store_true", help="torch.compile every model (default: eager)")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    device, dtype = torch.device(a.device), DTYPES[a.dtype]
    torch.manual_seed(0)
    x = torch.randn(a.batch, 3, a.img_size, a.img_size, device=device)
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    import triton

    tag = gpu.lower().replace("nvidia", "").strip().split()[0]
    out = Path(a.out) if a.out else Path(__file__).parent / "results" / f"ssd_models_{tag}.json"
    record = {"batch": a.batch, "img_size": a.img_size, "dtype": a.dtype, "compile": a.compile,
              "warmup": a.warmup, "iters": a.iters}
    result = {"device": gpu, "date": datetime.date.today().isoformat(), "torch": torch.__version__,
              "triton": triton.__version__, "timm": timm.__version__, "records": [record]}
    for kind, names in (("ours", a.ours), ("base", a.base), ("ours", a.extra)):
        for name in names:
            arch, _, backend = name.partition("@")
            kw = dict(backend=backend) if backend else {}
            try:
                with torch.device(device):  # initialise on the device: much faster than on CPU for big models
                    model = timm.create_model(arch, pretrained=False, **kw).eval()
            except Exception as e:  # a baseline missing from this timm version must not sink the run
                print(f"skip {name}: {type(e).__name__}: {e}")
                record[f"{kind}_{name}"] = {"error": f"{type(e).__name__}: {e}"}
                continue
            params = sum(t.numel() for t in model.parameters())
            if a.compile:
                model = torch.compile(model)
            ms, mem = time_model(model, x, dtype, a.warmup, a.iters)
            record[f"{kind}_{name}"] = {"params": params, "median_ms": ms, "img_per_s": a.batch / (ms * 1e-3),
                                        "peak_mem_gib": mem}
            print(f"{kind} {name:<32}{params / 1e6:8.2f}M{ms:10.2f} ms{a.batch / (ms * 1e-3):10.0f} img/s"
                  + (f"{mem:8.2f} GiB" if mem is not None else ""), flush=True)
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()
            save(result, out)  # after every model: a run cut short by a time limit keeps what it measured
    save(result, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
