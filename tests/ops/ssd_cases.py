"""Shared input builders for SSD op tests (error metrics and grad runner come from scan_cases)."""

from __future__ import annotations

import torch


def _gen(seed):
    return torch.Generator().manual_seed(seed if seed is not None else torch.seed() % (2**31))


def ssd_inputs(batch, length, heads, headdim, nstate, groups=1, *, dtype=torch.float64, seed=None, d_per_channel=False,
               with_z=True, with_state=True):
    """Causal/non-causal SSD inputs in a realistic range: dt before softplus ~ N(-1, 1), A in [-4.1, -0.1]."""
    g = _gen(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)
    x = {
        "x": r(batch, length, heads, headdim),
        "dt": r(batch, length, heads) - 1.0,
        "A": -torch.rand(heads, generator=g, dtype=dtype) * 4 - 0.1,
        "B": r(batch, length, groups, nstate),
        "C": r(batch, length, groups, nstate),
        "D": r(heads, headdim) if d_per_channel else r(heads),
        "dt_bias": r(heads) * 0.5,
    }
    if with_z:
        x["z"] = r(batch, length, heads, headdim)
    if with_state:
        x["initial_state"] = r(batch, heads, headdim, nstate)
    return x


def hsm_inputs(batch, dim, length, nstate, inner=None, *, dtype=torch.float64, seed=None):
    inner = inner or dim
    g = _gen(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)
    return {
        "x": r(batch, dim, length),
        "dt": r(batch, nstate, length),
        "B": r(batch, nstate, length),
        "C": r(batch, nstate, length),
        "W_hz": r(2 * inner, dim) / dim**0.5,
        "W_out": r(dim, inner) / inner**0.5,
        "D": r(1),
        "A": torch.rand(nstate, generator=g, dtype=dtype) * 15 + 1,
    }
