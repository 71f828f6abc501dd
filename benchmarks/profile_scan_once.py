"""Run one forward (and one backward) of the Triton scan at a given shape; for use under ncu."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_scan import make_inputs  # noqa: E402

from visionssm.ops.selective_scan import selective_scan  # noqa: E402

shape = tuple(int(v) for v in (sys.argv[1] if len(sys.argv) > 1 else "128,384,197,16").split(","))
x = make_inputs(*shape, torch.bfloat16)
leaves = {k: v.detach().clone().requires_grad_(True) for k, v in x.items()}
for _ in range(2):
    y = selective_scan(**leaves, delta_softplus=True, backend="triton")
    y.backward(torch.ones_like(y))
torch.cuda.synchronize()
print("ok", shape)
