"""Shared input builders and error metrics for selective-scan tests."""

from __future__ import annotations

import torch

INPUT_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_inputs(batch, dim, length, nstate, groups=1, *, dtype=torch.float64, seed=None, with_bc_groups_dim=True):
    """Fresh random inputs in a realistic range (delta before softplus ~ N(-1, 1), A < 0)."""
    g = torch.Generator().manual_seed(seed if seed is not None else torch.seed() % (2**31))
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)
    bc_shape = (batch, groups, nstate, length) if (with_bc_groups_dim or groups > 1) else (batch, nstate, length)
    return {
        "u": r(batch, dim, length),
        "delta": r(batch, dim, length) - 1.0,
        "A": -torch.rand(dim, nstate, generator=g, dtype=dtype) * 4 - 0.1,
        "B": r(*bc_shape),
        "C": r(*bc_shape),
        "D": r(dim),
        "z": r(batch, dim, length),
        "delta_bias": r(dim) * 0.5,
    }


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    x, ref = x.double().to(ref.device), ref.double()  # (a GPU result vs a CPU reference)
    assert not torch.isnan(x).any(), "NaN in result (an unwritten output?)"
    denom = ref.norm().item()
    return (x - ref).norm().item() / max(denom, 1e-300)


def run_with_grads(fn, inputs: dict, cast, *, seed=0, **kw):
    """Run fn on cast copies of inputs; backprop fixed random cotangents; return (outs, grads)."""
    leaves = {k: cast(v).detach().requires_grad_(True) for k, v in inputs.items() if v is not None}
    out = fn(**leaves, **kw)
    outs = out if isinstance(out, tuple) else (out,)
    g = torch.Generator().manual_seed(seed)
    loss = sum((o.double() * torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.device)).sum() for o in outs)
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return outs, dict(zip(leaves.keys(), grads))
