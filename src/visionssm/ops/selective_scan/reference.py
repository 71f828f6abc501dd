"""Reference selective scan: the plain sequential recurrence, one time step at a time.

Slow on purpose of clarity, dtype-generic (float64 works), differentiable through autograd.
It is the ground truth of every test; no other backend's code is reused here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def expand_groups(BC: torch.Tensor, dim: int) -> torch.Tensor:
    """(batch, N, L) or (batch, groups, N, L) -> (batch, dim, N, L); channel d reads group d // (dim/groups)."""
    if BC.dim() == 3:
        BC = BC.unsqueeze(1)
    groups = BC.shape[1]
    return BC.repeat_interleave(dim // groups, dim=1)


def grouped_bc(B: torch.Tensor, C: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """B, C as (batch, groups, N, L) with one group count: add the group axis to 3-D inputs, and when B and
    C have different group counts bring both to one group per channel."""
    B = B.unsqueeze(1) if B.dim() == 3 else B
    C = C.unsqueeze(1) if C.dim() == 3 else C
    if C.shape[1] != B.shape[1]:
        B, C = expand_groups(B, dim), expand_groups(C, dim)
    return B, C


def selective_scan_reference(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    reverse: bool = False,
    return_last_state: bool = False,
):
    """h_t = exp(delta_t * A) h_{t-1} + delta_t B_t u_t;  y_t = <C_t, h_t> + D u_t;  y *= silu(z).

    Computes in float32 at least (float64 stays float64) and returns u's dtype.
    """
    out_dtype = u.dtype
    dtype = torch.promote_types(u.dtype, torch.float32)
    u, delta, A = u.to(dtype), delta.to(dtype), A.to(dtype)
    batch, dim, length = u.shape
    Bx = expand_groups(B.to(dtype), dim)  # (batch, dim, N, L)
    Cx = expand_groups(C.to(dtype), dim)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    h = u.new_zeros(batch, dim, A.shape[1])
    ys = [None] * length
    steps = range(length - 1, -1, -1) if reverse else range(length)
    for t in steps:
        decay = torch.exp(delta[:, :, t, None] * A)  # (batch, dim, N)
        h = decay * h + (delta[:, :, t] * u[:, :, t])[:, :, None] * Bx[:, :, :, t]
        ys[t] = (h * Cx[:, :, :, t]).sum(-1)
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D.to(dtype)[:, None] * u
    if z is not None:
        y = y * F.silu(z.to(dtype))
    y = y.to(out_dtype)
    return (y, h) if return_last_state else y
