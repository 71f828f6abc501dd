"""Run our causal SSD a few times at one shape, forward (no grad) then forward+backward; for ncu.

    python benchmarks/profile_ssd_once.py [batch,L,heads,headdim,N]
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_ssd import make_inputs  # noqa: E402

from visionssm.ops.ssd import ssd_causal  # noqa: E402

shape = tuple(int(v) for v in (sys.argv[1] if len(sys.argv) > 1 else "8,6085,12,64,64").split(","))
x = make_inputs(*shape, torch.bfloat16, False)
run = lambda **k: ssd_causal(**k, chunk_size=64, dt_softplus=True, backend="triton")
with torch.no_grad():
    for _ in range(3):
        run(**x)
leaves = {k: v.requires_grad_(v.is_floating_point()) for k, v in x.items()}
for _ in range(2):
    y = run(**leaves)
    y.backward(torch.ones_like(y))
torch.cuda.synchronize()
print("ok", shape)
