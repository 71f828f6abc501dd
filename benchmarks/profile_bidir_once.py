"""Kernel times (torch.profiler) of one bidirectional scan call, forward and forward+backward, at a given shape.

    python benchmarks/profile_bidir_once.py [128,384,197,16]
"""

import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from bench_scan import make_inputs  # noqa: E402

from visionssm.ops.selective_scan import bidirectional_selective_scan  # noqa: E402

shape = tuple(int(v) for v in (sys.argv[1] if len(sys.argv) > 1 else "128,384,197,16").split(","))
xs = [make_inputs(*shape, torch.bfloat16, seed=s) for s in (0, 1)]
p = {k: tuple(x[k].detach().clone().requires_grad_(True) for x in xs) for k in ("u", "delta", "A", "B", "C", "D",
                                                                                   "delta_bias")}
z = xs[0]["z"].detach().clone().requires_grad_(True)
call = lambda: bidirectional_selective_scan(p["u"], p["delta"], p["A"], p["B"], p["C"], p["D"], z, p["delta_bias"],
                                            delta_softplus=True)
for _ in range(3):
    call().sum().backward()
torch.cuda.synchronize()
with profile(activities=[ProfilerActivity.CUDA]) as prof:
    for _ in range(5):
        call().sum().backward()
    torch.cuda.synchronize()
print(shape)
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12))
