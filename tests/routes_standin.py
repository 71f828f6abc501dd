"""Test-only stand-in for ``visionssm.ops.scan_routes`` (briefs/routes_api.md) while that op is not merged.

Installed into sys.modules only when the real module cannot be imported; built from the public
``selective_scan`` (gather each route, scan, scatter-add back).
"""

import sys
import types

import torch


def _cross(H, W, device=None):
    g = torch.arange(H * W, device=device).view(H, W)
    row, col = g.flatten(), g.t().flatten()
    return torch.stack([row, col, row.flip(0), col.flip(0)])


def _atrous(H, W, step=2, device=None):
    g = torch.arange(H * W, device=device).view(H, W)
    out = []
    for pw in range(step):
        for ph in range(step):
            sub = g[ph::step, pw::step]
            out.append(sub.flatten() if len(out) % 2 == 0 else sub.t().flatten())
    return torch.stack(out)


def _multiscale(H, W, splits=3, device=None):
    g = torch.arange(H * W, device=device).view(H, W)
    return torch.cat([g.flatten().flip(0), g.t().flatten(), g.t().flatten().flip(0)])[None]


def _routed(u, delta, A, B, C, index, D=None, delta_bias=None, delta_softplus=True, merge=True, out_dtype=None,
            backend=None):
    from visionssm.ops.selective_scan import selective_scan

    out_dtype = out_dtype or u.dtype
    batch, _, lmap = u.shape
    K = index.shape[0]
    ch = delta.shape[1] // K
    be = None if backend in (None, "triton") else backend
    ys = []
    if True:  # each per-route selective_scan call records its FLOPs
        for k in range(K):
            idx = index[k]
            rows = slice(k * ch, (k + 1) * ch)
            uk = (u if u.shape[1] == ch else u[:, rows]).float()[..., idx]
            yk = selective_scan(uk, delta[:, rows].float()[..., idx], A[rows], B[:, k].float()[..., idx],
                                C[:, k].float()[..., idx], D=None if D is None else D[rows],
                                delta_bias=None if delta_bias is None else delta_bias[rows],
                                delta_softplus=delta_softplus, backend=be)
            ys.append(yk.new_zeros(batch, ch, lmap).index_add(-1, idx, yk))
    y = torch.stack(ys, 1)
    y = y.sum(1) if merge else y.reshape(batch, K * ch, lmap)
    return y.to(out_dtype)


def install():
    try:
        import visionssm.ops.scan_routes  # noqa: F401
        return False
    except ImportError:
        mod = types.ModuleType("visionssm.ops.scan_routes")
        mod.cross_routes, mod.atrous_routes, mod.multiscale_routes = _cross, _atrous, _multiscale
        mod.routed_selective_scan = _routed
        sys.modules["visionssm.ops.scan_routes"] = mod
        return True
