"""Forward time of our Triton scan on (batch, dim, L) storage vs the same tensors stored token-major."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_scan import make_inputs, time_fn  # noqa: E402

from visionssm.ops.selective_scan import selective_scan  # noqa: E402

ours = lambda **kw: selective_scan(**kw, delta_softplus=True, backend="triton")
for shape in [(128, 384, 197, 16), (8, 384, 6085, 16)]:
    x = make_inputs(*shape, torch.bfloat16)
    tm = dict(x)
    for k in ("u", "delta", "z"):
        tm[k] = x[k].transpose(1, 2).contiguous().transpose(1, 2)
    cm_ms, tm_ms = time_fn(ours, x, False), time_fn(ours, tm, False)
    print(f"{shape} channel-major fwd {cm_ms:.3f} ms, token-major fwd {tm_ms:.3f} ms", flush=True)
