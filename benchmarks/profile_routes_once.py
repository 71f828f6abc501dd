"""Run the routed Triton scan a few times at one VMamba-T stage shape (model layout, inference); for ncu.

    python benchmarks/profile_routes_once.py [C,H,W] [--batch 128]
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from sweep_routes import model_inputs  # noqa: E402

from visionssm.ops.scan_routes import cross_routes, routed_selective_scan  # noqa: E402

ch, H, W = (int(v) for v in (sys.argv[1] if len(sys.argv) > 1 else "96,56,56").split(","))
x = model_inputs(128, ch, H, W)
index = cross_routes(H, W, device="cuda")
with torch.no_grad():
    for _ in range(3):
        routed_selective_scan(**x, index=index, out_dtype=torch.float32, backend="triton")
torch.cuda.synchronize()
print("ok", (ch, H, W))
