"""VMamba's four-route cross scan with the dt projection folded in (inference).

SS2D v2 computes, per route k, delta_k = dts_k @ dt_proj_k^T from the R low-rank columns of x_dbl, writes
the (batch, 4 C, L) delta tensor and scans the four routes. ``fused_cross_scan`` takes x_dbl itself: the
routed Triton kernel forms delta in registers from the R dt columns (triton_cross_fused.py). The Triton
path is forward-only (N <= 4); training keeps :func:`routed_selective_scan`, whose kernels have a backward.
"""

from __future__ import annotations

import torch

from .. import _flops
from ..selective_scan import resolve_backend
from .reference import routed_selective_scan_reference
from .routes import cross_routes
from .torch_path import routed_selective_scan_torch

__all__ = ["fused_cross_scan", "fused_cross_scan_reference"]


def _explicit(u, x_dbl, dt_weight, A, H, W, D, delta_bias, delta_softplus, routed):
    batch, ch, L = u.shape
    K, _, R = dt_weight.shape
    N = A.shape[1]
    dtype = torch.promote_types(u.dtype, torch.float32)
    dts, bs, cs = x_dbl.to(dtype).split([R, N, N], dim=-1)
    delta = torch.einsum("blkr,kdr->bkdl", dts, dt_weight.to(dtype)).reshape(batch, K * ch, L)
    index = cross_routes(H, W, device=u.device)
    return routed(u, delta, A, bs.permute(0, 2, 3, 1), cs.permute(0, 2, 3, 1), index, D, delta_bias,
                  delta_softplus, True, dtype, "map")


def fused_cross_scan_reference(u, x_dbl, dt_weight, A, H, W, D=None, delta_bias=None, delta_softplus=True):
    """The same result through an explicit delta and the reference routed scan (float64-capable)."""
    return _explicit(u, x_dbl, dt_weight, A, H, W, D, delta_bias, delta_softplus, routed_selective_scan_reference)


def _check(u, x_dbl, dt_weight, A, H, W, D, delta_bias):
    name = "fused_cross_scan"
    if u.dim() != 3 or u.shape[2] != H * W:
        raise ValueError(f"{name}: u must be (batch, C, H*W={H * W}), got {tuple(u.shape)}")
    batch, ch, L = u.shape
    if dt_weight.dim() != 3 or dt_weight.shape[:2] != (4, ch):
        raise ValueError(f"{name}: dt_weight must be (4, C={ch}, R), got {tuple(dt_weight.shape)}")
    R = dt_weight.shape[2]
    if A.dim() != 2 or A.shape[0] != 4 * ch:
        raise ValueError(f"{name}: A must be (4*C={4 * ch}, N), got {tuple(A.shape)}")
    N = A.shape[1]
    if tuple(x_dbl.shape) != (batch, L, 4, R + 2 * N):
        raise ValueError(f"{name}: x_dbl must be {(batch, L, 4, R + 2 * N)} (dts, B, C per route), "
                         f"got {tuple(x_dbl.shape)}")
    for v_name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and tuple(t.shape) != (4 * ch,):
            raise ValueError(f"{name}: {v_name} must be ({4 * ch},), got {tuple(t.shape)}")


def fused_cross_scan(
    u: torch.Tensor,
    x_dbl: torch.Tensor,
    dt_weight: torch.Tensor,
    A: torch.Tensor,
    H: int,
    W: int,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    backend: str | None = None,
) -> torch.Tensor:
    """Sum over VMamba's four cross routes of the selective scan of an H x W map.

    u ``(batch, C, H*W)`` (any strides; channels-last maps are read in place); x_dbl ``(batch, H*W, 4,
    R + 2N)``: per token and route the R dt columns, then B, then C (SS2D's x_proj output); dt_weight
    ``(4, C, R)``; A ``(4C, N)``; D, delta_bias ``(4C,)``. Route k uses delta_k = x_dbl[..., k, :R] @
    dt_weight[k]^T. Returns ``(batch, C, H*W)`` in float32 (or wider): the same as
    :func:`routed_selective_scan` over ``cross_routes(H, W)`` with that delta, ``merge=True``.

    The Triton backend needs N <= 4 and no autograd (it has no backward).
    """
    _check(u, x_dbl, dt_weight, A, H, W, D, delta_bias)
    _flops.add("selective_scan", _flops.selective_scan_flops(u.shape[0], 4 * u.shape[1], H * W, A.shape[1],
                                                             D is not None, False))
    which = resolve_backend(backend, u.device)
    if which == "reference":
        return fused_cross_scan_reference(u, x_dbl, dt_weight, A, H, W, D, delta_bias, delta_softplus)
    if which == "torch":
        return _explicit(u, x_dbl, dt_weight, A, H, W, D, delta_bias, delta_softplus, routed_selective_scan_torch)
    if A.shape[1] > 4:
        raise ValueError(f"fused_cross_scan: the Triton kernel takes d_state <= 4 (VMamba v2: 1), got {A.shape[1]}")
    tensors = (u, x_dbl, dt_weight, A, D, delta_bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        raise RuntimeError("fused_cross_scan: the Triton path is forward-only; run it under torch.no_grad() "
                           "or train through routed_selective_scan")
    try:
        from .triton_cross_fused import cross_scan_fused_triton
    except ImportError as e:
        raise RuntimeError(f"fused_cross_scan: backend='triton' is not available ({e})") from None
    return cross_scan_fused_triton(u, x_dbl, dt_weight, A, D, delta_bias, H, W, delta_softplus)
