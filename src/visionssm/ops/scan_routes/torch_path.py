"""Pure-PyTorch routed scan: vectorised gather -> chunked selective scan -> scatter-add.

It materialises the permuted sequences (K copies of the map), which is fine on a CPU; autograd runs through
torch's gather/scatter and the chunked scan's own backward. Traceable by torch.compile and ONNX export.
"""

from __future__ import annotations

import torch

from ..selective_scan.chunked import selective_scan_chunked


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (batch, K, rows, Lmap), index (K, Lr) -> (batch, K, rows, Lr) with out[b,k,r,t] = x[b,k,r,index[k,t]]."""
    batch, K, rows, _ = x.shape
    return x.gather(-1, index[None, :, None, :].expand(batch, K, rows, index.shape[1]))


def routed_selective_scan_torch(
    u, delta, A, B, C, index, D=None, delta_bias=None, delta_softplus=True, merge=True, out_dtype=None,
    output_order="map",
):
    """Same contract as :func:`visionssm.ops.scan_routes.routed_selective_scan`."""
    out_dtype = out_dtype or u.dtype
    batch, _, lmap = u.shape
    K, lr = index.shape
    ch = delta.shape[1] // K
    index = index.to(u.device, torch.long)
    uk = u[:, None].expand(batch, K, ch, lmap) if u.shape[1] == ch else u.view(batch, K, ch, lmap)
    xs = _gather(uk, index).reshape(batch, K * ch, lr)
    dts = _gather(delta.view(batch, K, ch, lmap), index).reshape(batch, K * ch, lr)
    # Scan in float32 or wider so the route sum and the cast to out_dtype happen once, at the end.
    dtype = torch.promote_types(u.dtype, torch.float32)
    ys = selective_scan_chunked(
        xs.to(dtype), dts, A, _gather(B, index), _gather(C, index), D=D, delta_bias=delta_bias,
        delta_softplus=delta_softplus,
    )
    if output_order == "route":
        return ys.to(out_dtype)
    ys = ys.view(batch, K, ch, lr)
    y = ys.new_zeros(batch, K, ch, lmap).scatter_add(-1, index[None, :, None, :].expand_as(ys), ys)
    y = y.sum(1) if merge else y.view(batch, K * ch, lmap)
    return y.to(out_dtype)
