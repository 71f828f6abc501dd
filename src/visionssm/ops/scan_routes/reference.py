"""Reference routed scan: build each route's permuted sequences explicitly, scan, scatter back, sum.

Slow and plain on purpose: a Python loop over routes, ``index_select`` copies, the float64-capable
``selective_scan_reference`` per route, ``index_add`` back to map positions. Ground truth of the tests.
"""

from __future__ import annotations

import torch

from ..selective_scan import selective_scan_reference


def routed_selective_scan_reference(
    u, delta, A, B, C, index, D=None, delta_bias=None, delta_softplus=True, merge=True, out_dtype=None,
    output_order="map",
):
    """Same contract as :func:`visionssm.ops.scan_routes.routed_selective_scan` (math in float32 or wider)."""
    out_dtype = out_dtype or u.dtype
    dtype = torch.promote_types(u.dtype, torch.float32)
    batch, _, lmap = u.shape
    K = index.shape[0]
    ch = delta.shape[1] // K
    u_shared = u.shape[1] == ch
    index = index.to(u.device, torch.long)
    outs = []
    for k in range(K):
        idx = index[k]
        rows = slice(k * ch, (k + 1) * ch)
        u_k = (u if u_shared else u[:, rows]).to(dtype).index_select(-1, idx)
        y_k = selective_scan_reference(
            u_k,
            delta[:, rows].to(dtype).index_select(-1, idx),
            A[rows],
            B[:, k : k + 1].to(dtype).index_select(-1, idx),
            C[:, k : k + 1].to(dtype).index_select(-1, idx),
            D=D[rows] if D is not None else None,
            delta_bias=delta_bias[rows] if delta_bias is not None else None,
            delta_softplus=delta_softplus,
        )
        outs.append(y_k if output_order == "route" else y_k.new_zeros(batch, ch, lmap).index_add(-1, idx, y_k))
    y = torch.stack(outs, 1)  # (batch, K, ch, Lmap or Lr)
    if output_order == "route":
        return y.flatten(1, 2).to(out_dtype)
    y = y.sum(1) if merge else y.reshape(batch, K * ch, lmap)
    return y.to(out_dtype)
