"""Vision Mamba's two scan directions as one op: the second direction read right to left, in place.

Each direction has its own u, delta, A, B, C, D and delta_bias (Vim's bimamba v2: separate conv1d, x_proj,
dt_proj, A_log, D per branch); the gate z is shared. On the Triton path both directions run in one launch
of the selective-scan kernels (BIDIR in triton_fwd.py / triton_bwd.py) over the stacked channel axis
[forward | backward], reading each direction's tensors where they are: no flipped copies and no stacked
copies of the inputs. The reference and torch paths call :func:`selective_scan` once per direction.
"""

from __future__ import annotations

import torch

from .. import _flops
from . import _check_shapes, _triton_kernel, resolve_backend
from .chunked import selective_scan_chunked
from .reference import selective_scan_reference

__all__ = ["bidirectional_selective_scan"]

Pair = tuple[torch.Tensor, torch.Tensor]


def _pair(name: str, value, optional: bool = False):
    if value is None and optional:
        return None
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"bidirectional_selective_scan: {name} must be a (forward, backward) pair of tensors")
    return tuple(value)


def bidirectional_selective_scan(
    u: Pair,
    delta: Pair,
    A: Pair,
    B: Pair,
    C: Pair,
    D: Pair | None = None,
    z: torch.Tensor | None = None,
    delta_bias: Pair | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    backend: str | None = None,
):
    """Two selective scans, direction 0 forward in time and direction 1 from t = L-1 down to 0.

    Every argument but z is a (forward, backward) pair shaped as in :func:`selective_scan`: u, delta
    ``(batch, dim, L)``, A ``(dim, N)``, B, C ``(batch, [groups,] N, L)``, D, delta_bias ``(dim,)``. z
    ``(batch, dim, L)`` gates both directions (y_k * silu(z)).

    Returns ``(batch, 2, dim, L)`` in u's dtype (``out[:, 1]`` in memory order, i.e. already un-flipped), and
    the last states ``(batch, 2, dim, N)`` if ``return_last_state`` (direction 1's after t = 0).
    """
    u, delta, A, B, C = (_pair(n, v) for n, v in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C)))
    D, delta_bias = _pair("D", D, True), _pair("delta_bias", delta_bias, True)
    for k in range(2):
        _check_shapes(u[k], delta[k], A[k], B[k], C[k], D[k] if D else None, z, delta_bias[k] if delta_bias else None)
    if u[0].shape != u[1].shape or A[0].shape != A[1].shape or B[0].shape != B[1].shape or C[0].shape != C[1].shape:
        raise ValueError("bidirectional_selective_scan: both directions must have the same shapes, got u "
                         f"{tuple(u[0].shape)}/{tuple(u[1].shape)}, A {tuple(A[0].shape)}/{tuple(A[1].shape)}, "
                         f"B {tuple(B[0].shape)}/{tuple(B[1].shape)}, C {tuple(C[0].shape)}/{tuple(C[1].shape)}")
    _flops.add("selective_scan", 2 * _flops.selective_scan_flops(*u[0].shape, A[0].shape[1], D is not None,
                                                                 z is not None))
    which = resolve_backend(backend, u[0].device)
    if which == "triton":
        if _triton_kernel() is None:
            raise RuntimeError("bidirectional_selective_scan: backend='triton' is not available")
        from .triton_scan import bidirectional_selective_scan_triton

        return bidirectional_selective_scan_triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                                   return_last_state)
    scan = selective_scan_reference if which == "reference" else selective_scan_chunked
    outs = [scan(u[k], delta[k], A[k], B[k], C[k], D[k] if D else None, z, delta_bias[k] if delta_bias else None,
                 delta_softplus, k == 1, True) for k in range(2)]
    out = torch.stack([o[0] for o in outs], 1)
    return (out, torch.stack([o[1] for o in outs], 1)) if return_last_state else out
