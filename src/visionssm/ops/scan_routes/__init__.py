"""Scan routes: a 2D map scanned along routes given as index maps, with the matching merge.

``routed_selective_scan`` gathers each route's sequence through ``index`` (K, Lr), runs the selective scan
(see :mod:`visionssm.ops.selective_scan`) per route, scatters the outputs back to map positions and, with
``merge=True``, sums over routes. Route builders: :func:`cross_routes` (VMamba), :func:`snake_routes`
(PlainMamba / MHS-VM 'C'), :func:`mhs_routes` (MHS-VM C/X/S/Z), :func:`atrous_routes` (EfficientVMamba),
:func:`multiscale_routes` (MSVMamba low-resolution branch).

How the families map onto it (u shared by the routes unless noted):
  VMamba SS2D        cross_routes(H, W), merge=True (out_dtype=torch.float32 for the fp32-output kernels);
  EfficientVMamba    atrous_routes(Hp, Wp, 2) on the map padded to even size, merge=True (one route per pixel);
  MSVMamba           full map: cross_routes(H, W)[:1]; low-res map: multiscale_routes(h, w) with
                     merge=False, output_order="route" (the official LayerNorm runs on each visit, then
                     the visits are un-permuted and summed);
  MHS-VM             per head mhs_routes(H, W, pattern), merge=False (GFU fuses the 4 route outputs).

Backends: "reference" (explicit permuted copies, float64-capable), "torch" (vectorised gather/scatter around
the chunked CPU scan), "triton" (reads and writes through the index map inside the kernels; no permuted
copies of the map). ``backend=None`` picks triton for CUDA tensors; ``VISIONSSM_BACKEND`` overrides.
"""

from __future__ import annotations

import torch

from .. import _flops
from ..selective_scan import resolve_backend
from .reference import routed_selective_scan_reference
from .routes import atrous_routes, cross_routes, mhs_routes, multiscale_routes, snake_routes
from .torch_path import routed_selective_scan_torch

__all__ = [
    "routed_selective_scan", "routed_selective_scan_reference", "routed_selective_scan_torch",
    "cross_routes", "snake_routes", "mhs_routes", "atrous_routes", "multiscale_routes",
]


def _check(u, delta, A, B, C, index, D, delta_bias):
    name = "routed_selective_scan"
    if index.dim() != 2 or index.dtype.is_floating_point or index.dtype == torch.bool:
        raise ValueError(f"{name}: index must be an integer (K, Lr) tensor, got {index.dtype} {tuple(index.shape)}")
    K = index.shape[0]
    if u.dim() != 3 or delta.dim() != 3:
        raise ValueError(f"{name}: u and delta must be (batch, channels, Lmap), got {tuple(u.shape)}, "
                         f"{tuple(delta.shape)}")
    batch, _, lmap = delta.shape
    if delta.shape[1] % K:
        raise ValueError(f"{name}: delta has {delta.shape[1]} channels, not a multiple of K={K} routes")
    ch = delta.shape[1] // K
    if u.shape[0] != batch or u.shape[2] != lmap or u.shape[1] not in (ch, K * ch):
        raise ValueError(f"{name}: u shape {tuple(u.shape)} must be ({batch}, {ch} or {K * ch}, {lmap})")
    if A.dim() != 2 or A.shape[0] != K * ch:
        raise ValueError(f"{name}: A must be (K*C={K * ch}, N), got {tuple(A.shape)}")
    for bc_name, t in (("B", B), ("C", C)):
        if tuple(t.shape) != (batch, K, A.shape[1], lmap):
            raise ValueError(f"{name}: {bc_name} must be {(batch, K, A.shape[1], lmap)}, got {tuple(t.shape)}")
    for v_name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and tuple(t.shape) != (K * ch,):
            raise ValueError(f"{name}: {v_name} must be ({K * ch},), got {tuple(t.shape)}")
    checkable = index.device.type == "cpu" and index.numel() and not torch.compiler.is_compiling()
    if checkable and (int(index.min()) < 0 or int(index.max()) >= lmap):
        raise ValueError(f"{name}: index values must lie in [0, Lmap={lmap})")


def routed_selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    index: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    merge: bool = True,
    out_dtype: torch.dtype | None = None,
    backend: str | None = None,
    output_order: str = "map",
) -> torch.Tensor:
    """Selective scan of a map along K routes.

    u: ``(batch, C, Lmap)`` shared by all routes, or ``(batch, K*C, Lmap)`` one map per route; delta
    ``(batch, K*C, Lmap)``, B and C ``(batch, K, N, Lmap)``, all in map order; A ``(K*C, N)``; D,
    delta_bias ``(K*C,)``; index ``(K, Lr)``: route k visits map position ``index[k, t]`` at step t
    (positions may repeat within a route, e.g. :func:`multiscale_routes`; their outputs are summed).

    Returns ``(batch, C, Lmap)`` = sum over routes of each route's outputs at the positions it visited
    (``merge=True``), or ``(batch, K*C, Lmap)`` each route's outputs in map order, 0 where unvisited.
    Routes are summed in float32 (or wider) and cast once to ``out_dtype`` (default u's dtype).

    Extra keyword: ``output_order="route"`` (with ``merge=False``) returns ``(batch, K*C, Lr)``, route k's
    output at step t in column t, without the scatter -- for models that transform each visit before
    un-permuting, e.g. MSVMamba's LayerNorm on the concatenated low-resolution route.
    Index values are range-checked when the index lives on the CPU (not while torch.compile traces) and,
    once per index tensor, on the Triton path.
    """
    _check(u, delta, A, B, C, index, D, delta_bias)
    if output_order not in ("map", "route") or (output_order == "route" and merge):
        raise ValueError(f"routed_selective_scan: output_order must be 'map', or 'route' with merge=False; "
                         f"got {output_order!r} with merge={merge}")
    K, lr = index.shape
    _flops.add("selective_scan", _flops.selective_scan_flops(u.shape[0], delta.shape[1], lr, A.shape[1],
                                                             D is not None, False))
    args = (u, delta, A, B, C, index, D, delta_bias, delta_softplus, merge, out_dtype, output_order)
    which = resolve_backend(backend, u.device)
    if which == "reference":
        return routed_selective_scan_reference(*args)
    if which == "torch":
        return routed_selective_scan_torch(*args)
    try:
        from .triton_routed import routed_selective_scan_triton
    except ImportError as e:
        raise RuntimeError(f"routed_selective_scan: backend='triton' is not available ({e})") from None
    return routed_selective_scan_triton(*args)
