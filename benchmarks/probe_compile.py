"""Eager vs torch.compile inference time of a few models (bf16, batch 128, 224², channels_last), one run.

    python benchmarks/probe_compile.py [MODEL ...]

A probe for whether compilation closes the VMamba-vs-Swin gap; prints a table, writes nothing.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import timm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vmamba import time_model  # noqa: E402

import visionssm  # noqa: E402,F401


def main():
    names = sys.argv[1:] or ["vmamba_tiny_s1l8", "swin_tiny_patch4_window7_224"]
    x = torch.randn(128, 3, 224, 224, device="cuda").contiguous(memory_format=torch.channels_last)
    for name in names:
        model = timm.create_model(name).cuda().eval().to(memory_format=torch.channels_last)
        eager, _ = time_model(model, x, torch.bfloat16, 5, 15)
        t0 = time.time()
        try:
            compiled = torch.compile(model)
            comp, _ = time_model(compiled, x, torch.bfloat16, 5, 15)
        except Exception as e:  # noqa: BLE001 - a probe: report and go on
            print(f"{name}: compile failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            comp = float("nan")
        print(f"{name:<36} eager {eager:8.2f} ms ({128 / eager * 1e3:7.0f} img/s)  compiled {comp:8.2f} ms "
              f"({128 / comp * 1e3:7.0f} img/s)  compile+time {time.time() - t0:5.0f} s", flush=True)


if __name__ == "__main__":
    main()
