"""Shared input builders for routed-scan tests."""

from __future__ import annotations

import torch

from visionssm.ops.scan_routes import atrous_routes, cross_routes, mhs_routes, multiscale_routes, snake_routes

ROUTE_KINDS = ("cross", "snake", "mhs_X", "mhs_S", "atrous", "multiscale", "row")


def make_routes(kind: str, H: int, W: int) -> torch.Tensor:
    if kind == "cross":
        return cross_routes(H, W)
    if kind == "snake":
        return snake_routes(H, W)
    if kind.startswith("mhs_"):
        return mhs_routes(H, W, kind[-1])
    if kind == "atrous":
        return atrous_routes(H, W, 2)
    if kind == "multiscale":
        return multiscale_routes(H, W, 3)
    if kind == "row":
        return cross_routes(H, W)[:1]
    raise ValueError(kind)


def make_route_inputs(batch, ch, K, lmap, nstate, *, u_shared=True, dtype=torch.float64, seed=0):
    """Random map-order inputs (delta before softplus ~ N(-1, 1), A < 0)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)
    return {
        "u": r(batch, ch if u_shared else K * ch, lmap),
        "delta": r(batch, K * ch, lmap) - 1.0,
        "A": -torch.rand(K * ch, nstate, generator=g, dtype=dtype) * 4 - 0.1,
        "B": r(batch, K, nstate, lmap),
        "C": r(batch, K, nstate, lmap),
        "D": r(K * ch),
        "delta_bias": r(K * ch) * 0.5,
    }
