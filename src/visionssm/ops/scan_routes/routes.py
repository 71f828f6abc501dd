"""Route index maps over an H x W map stored row-major (position p = h * W + w).

A route is a row of an index map ``(K, Lr)``: step t of route k visits map position ``index[k, t]``.
Every builder returns a ``torch.long`` tensor (put it on the device once, e.g. as a non-persistent buffer).
"""

from __future__ import annotations

import torch


def _positions(H: int, W: int, device=None) -> torch.Tensor:
    if H < 1 or W < 1:
        raise ValueError(f"scan routes: map size must be positive, got H={H}, W={W}")
    return torch.arange(H * W, device=device).view(H, W)


def cross_routes(H: int, W: int, device=None) -> torch.Tensor:
    """VMamba cross-scan, K=4: row-major, column-major, row-major reversed, column-major reversed.

    # official: MzeroMiko/VMamba classification/models/csm_triton.py (cross2d: r0, r1 = transposed, r2/r3 flipped)
    """
    g = _positions(H, W, device)
    row, col = g.flatten(), g.t().flatten()
    return torch.stack([row, col, row.flip(0), col.flip(0)])


def _snake(g: torch.Tensor) -> torch.Tensor:
    """Boustrophedon over the rows of g: row 0 left to right, row 1 right to left, ..."""
    g = g.clone()
    g[1::2] = g[1::2].flip(1)
    return g.flatten()


def _diagonal(H: int, W: int, device=None) -> torch.Tensor:
    """Anti-diagonal zigzag from the top-left corner: diagonal i+j=s, walked with i descending for even s."""
    order = []
    for s in range(H + W - 1):
        cells = [(i, s - i) for i in range(max(0, s - W + 1), min(H, s + 1))]  # i ascending
        if s % 2 == 0:
            cells.reverse()
        order += [i * W + j for i, j in cells]
    return torch.tensor(order, dtype=torch.long, device=device)


def _spiral(H: int, W: int, device=None) -> torch.Tensor:
    """Clockwise spiral from the top-left corner, heading right first."""
    seen = torch.zeros(H, W, dtype=torch.bool)
    moves = ((0, 1), (1, 0), (0, -1), (-1, 0))
    i = j = m = 0
    order = []
    for _ in range(H * W):
        order.append(i * W + j)
        seen[i, j] = True
        for turn in range(4):
            di, dj = moves[(m + turn) % 4]
            if 0 <= i + di < H and 0 <= j + dj < W and not seen[i + di, j + dj]:
                m = (m + turn) % 4
                i, j = i + di, j + dj
                break
    return torch.tensor(order, dtype=torch.long, device=device)


def _with_reversals(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.stack([a, a.flip(0), b, b.flip(0)])


def snake_routes(H: int, W: int, device=None) -> torch.Tensor:
    """Continuous zigzag scan, K=4: row snake, its reverse, column snake, its reverse.

    Consecutive tokens are 4-neighbours. Same order as PlainMamba's four directions and MHS-VM's 'C' head.
    # official: ChenhongyiYang/PlainMamba plain_mamba_layer.py get_permute_order; PixDeep/MHS-VM scanutils.py
    """
    g = _positions(H, W, device)
    return _with_reversals(_snake(g), _snake(g.t().contiguous()))


def mhs_routes(H: int, W: int, pattern: str = "C", device=None) -> torch.Tensor:
    """MHS-VM scan head routes, K=4 as [A, A reversed, B, B reversed].

    'C' snake (= :func:`snake_routes`); 'X' anti-diagonal zigzag and its left-right mirror; 'S' clockwise
    spiral and its up-down mirror; 'Z' row-major and column-major.
    # official: PixDeep/MHS-VM routegen.py, scanutils.py, models/vmunet/mhsm.py ScanPattern.ScanRoutes
    """
    g = _positions(H, W, device)
    if pattern == "C":
        return snake_routes(H, W, device)
    if pattern == "Z":
        return _with_reversals(g.flatten(), g.t().flatten())
    if pattern == "X":
        a = _diagonal(H, W, device)
        mirror = (a // W) * W + (W - 1 - a % W)
        return _with_reversals(a, mirror)
    if pattern == "S":
        a = _spiral(H, W, device)
        mirror = (H - 1 - a // W) * W + a % W
        return _with_reversals(a, mirror)
    raise ValueError(f"mhs_routes: unknown pattern {pattern!r}; choose one of 'C", "X", "S", "Z'")


def atrous_routes(H: int, W: int, step: int = 2, device=None) -> torch.Tensor:
    """EfficientVMamba ES2D skip-sampled sub-grids, K = step^2 routes of (H/step)(W/step) tokens each.

    Route k = pw * step + ph scans the pixels (ph + step*i, pw + step*j); even k row-major, odd k column-major.
    For step=2 that is: (0,0) row-major, (1,0) column-major, (0,1) row-major, (1,1) column-major, which with
    the pixel -> route assignment is the official order. H and W must be multiples of step: pad the map first
    (the official code zero-pads the map before the projections and crops after the merge).
    # official: TerryPei/EfficientVMamba classification/models/efficient_scan.py EfficientScan
    """
    if step < 1:
        raise ValueError(f"atrous_routes: step must be >= 1, got {step}")
    if H % step or W % step:
        raise ValueError(f"atrous_routes: H={H} and W={W} must be multiples of step={step}; pad the map first")
    g = _positions(H, W, device)
    routes = []
    for pw in range(step):
        for ph in range(step):
            sub = g[ph::step, pw::step]
            routes.append(sub.flatten() if len(routes) % 2 == 0 else sub.t().flatten())
    return torch.stack(routes)


def multiscale_routes(H: int, W: int, splits: int = 3, device=None) -> torch.Tensor:
    """MSVMamba low-resolution branch: ONE route (K=1) of splits * H * W steps over the downsampled H x W map.

    splits=3 concatenates row-major reversed, column-major, column-major reversed (the hidden state flows
    across the parts); splits=2: row-major reversed, column-major reversed; splits=1: column-major reversed.
    Each position is visited ``splits`` times and its outputs are summed by the merge. The full-resolution
    branch is ``cross_routes(H0, W0)[:1]`` (row-major).
    # official: YuHengsss/MSVMamba classification/models/vmamba.py SS2D.forward (multiscale_4scan_12)
    """
    g = _positions(H, W, device)
    row_r, col, col_r = g.flatten().flip(0), g.t().flatten(), g.t().flatten().flip(0)
    parts = {3: [row_r, col, col_r], 2: [row_r, col_r], 1: [col_r]}
    if splits not in parts:
        raise ValueError(f"multiscale_routes: splits must be 1, 2 or 3, got {splits}")
    return torch.cat(parts[splits])[None]
