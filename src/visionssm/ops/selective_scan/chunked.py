"""Fast pure-PyTorch selective scan for CPU (and a fallback anywhere).

Why it is shaped this way: on a CPU the scan is bound by memory traffic, not arithmetic. Whole-sequence
tensors of shape (batch, dim, L, N) fall out of cache and every pass over them costs milliseconds, while a
step of the recurrence on a (batch, dim, N) slice stays in cache. So time is cut into chunks of
``chunk_size`` steps: per chunk the decays exp(delta A) and inputs delta B u are built in one vectorized
pass each, the recurrence runs one fused multiply-add per step into a chunk buffer, and the output
contraction with C is a batched matmul. Only the state at each chunk start is saved; the backward pass
recomputes a chunk's states from it and runs the adjoint recurrence right to left. Memory is
O(batch * dim * N * chunk_size) plus O(batch * dim * N * L / chunk_size) for the saved chunk states.

Exact up to rounding: the sequential recurrence is evaluated as written, no exp(-cumsum) tricks that
overflow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import _alloc
from .reference import grouped_bc

# About 4 MiB of float32 per chunk buffer keeps the three buffers in a typical last-level cache.
_CHUNK_BYTES = 4 << 20


def _time_major(x: torch.Tensor, reverse: bool) -> torch.Tensor:
    """Move the last (time) axis first, in scan order, contiguous."""
    x = x.movedim(-1, 0)
    if reverse:
        x = x.flip(0)
    return x.contiguous()


def _from_time_major(x: torch.Tensor, reverse: bool) -> torch.Tensor:
    if reverse:
        x = x.flip(0)
    return x.movedim(0, -1).contiguous()


def default_chunk_size(batch: int, dim: int, nstate: int, length: int, itemsize: int = 4) -> int:
    per_step = batch * dim * nstate * itemsize
    return int(max(1, min(length, _CHUNK_BYTES // max(per_step, 1))))


class _ChunkedScan(torch.autograd.Function):
    """Core recurrence y_t = <C_t, h_t>, h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t (no D, no gate)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, reverse: bool, chunk_size: int):
        batch, dim, length = u.shape
        groups, nstate = B.shape[1], A.shape[1]
        dg = dim // groups
        ut = _time_major(u, reverse).view(length, batch, groups, dg)
        dt = _time_major(delta, reverse).view(length, batch, groups, dg)
        Bt = _time_major(B, reverse)  # (L, batch, groups, N)
        Ct = _time_major(C, reverse)
        Ag = A.view(groups, dg, nstate)
        T = min(chunk_size, length)
        n_chunks = (length + T - 1) // T
        dtype = u.dtype
        decay = _alloc.empty(T, batch, groups, dg, nstate, dtype=dtype, device=u.device)
        states = _alloc.empty_like(decay)
        y = _alloc.empty(length, batch, groups, dg, dtype=dtype, device=u.device)
        starts = _alloc.empty(n_chunks, batch, groups, dg, nstate, dtype=dtype, device=u.device)
        h = u.new_zeros(batch, groups, dg, nstate)
        for c in range(n_chunks):
            t0 = c * T
            n = min(T, length - t0)
            starts[c].copy_(h)
            d_c, u_c, B_c = dt[t0 : t0 + n], ut[t0 : t0 + n], Bt[t0 : t0 + n]
            torch.exp(torch.mul(d_c.unsqueeze(-1), Ag, out=decay[:n]), out=decay[:n])
            torch.mul((d_c * u_c).unsqueeze(-1), B_c.unsqueeze(-2), out=states[:n])
            prev = h
            for t in range(n):
                states[t].addcmul_(decay[t], prev)
                prev = states[t]
            h = states[n - 1].clone()
            # y[t, b, g, :] = states[t, b, g] @ C[t, b, g]: one batched matmul over (t, b, g).
            torch.matmul(
                states[:n].view(n * batch * groups, dg, nstate),
                Ct[t0 : t0 + n].view(n * batch * groups, nstate, 1),
                out=y[t0 : t0 + n].view(n * batch * groups, dg, 1),
            )
        ctx.save_for_backward(ut, dt, Ag, Bt, Ct, starts)
        ctx.reverse, ctx.chunk = reverse, T
        ctx.shape = (batch, dim, length, groups, dg, nstate)
        return _from_time_major(y.view(length, batch, dim), reverse), h.view(batch, dim, nstate)

    @staticmethod
    def backward(ctx, dy, dlast):
        ut, dt, Ag, Bt, Ct, starts = ctx.saved_tensors
        reverse, T = ctx.reverse, ctx.chunk
        batch, dim, length, groups, dg, nstate = ctx.shape
        dtype, device = ut.dtype, ut.device
        dyt = _time_major(dy.to(dtype), reverse).view(length, batch, groups, dg)
        n_chunks = starts.shape[0]
        decay = _alloc.empty(T, batch, groups, dg, nstate, dtype=dtype, device=device)
        states = _alloc.empty_like(decay)
        adj = _alloc.empty_like(decay)
        dx = _alloc.empty(length, batch, groups, dg, dtype=dtype, device=device)  # grad of delta * u
        dd_a = _alloc.empty_like(dx)  # grad of delta through the decay
        dB = _alloc.empty_like(Bt)
        dC = _alloc.empty_like(Ct)
        dA = torch.zeros_like(Ag)
        carry = (
            dlast.to(dtype).view(batch, groups, dg, nstate).clone()
            if dlast is not None
            else torch.zeros(batch, groups, dg, nstate, dtype=dtype, device=device)
        )
        for c in range(n_chunks - 1, -1, -1):
            t0 = c * T
            n = min(T, length - t0)
            sl = slice(t0, t0 + n)
            d_c, u_c, B_c, C_c, dy_c = dt[sl], ut[sl], Bt[sl], Ct[sl], dyt[sl]
            du_c = d_c * u_c
            # Recompute the chunk's states from its saved start.
            torch.exp(torch.mul(d_c.unsqueeze(-1), Ag, out=decay[:n]), out=decay[:n])
            torch.mul(du_c.unsqueeze(-1), B_c.unsqueeze(-2), out=states[:n])
            prev = starts[c]
            for t in range(n):
                states[t].addcmul_(decay[t], prev)
                prev = states[t]
            m = n * batch * groups
            # dC[t, b, g] = dy[t, b, g, :] @ states[t, b, g]
            torch.matmul(dy_c.reshape(m, 1, dg), states[:n].view(m, dg, nstate), out=dC[sl].view(m, 1, nstate))
            # Adjoint of the state, right to left: adj_t = C_t dy_t + decay_{t+1} adj_{t+1}.
            torch.mul(dy_c.unsqueeze(-1), C_c.unsqueeze(-2), out=adj[:n])
            adj[n - 1].add_(carry)
            for t in range(n - 2, -1, -1):
                adj[t].addcmul_(decay[t + 1], adj[t + 1])
            carry = decay[0] * adj[0]
            torch.matmul(du_c.reshape(m, 1, dg), adj[:n].view(m, dg, nstate), out=dB[sl].view(m, 1, nstate))
            torch.matmul(adj[:n].view(m, dg, nstate), B_c.reshape(m, nstate, 1), out=dx[sl].view(m, dg, 1))
            # q_t = adj_t * decay_t * h_{t-1}: the grad of (delta_t A) in the decay.
            q = decay[:n].mul_(adj[:n])
            if n > 1:
                q[1:].mul_(states[: n - 1])
            q[0].mul_(starts[c])
            dA.add_(torch.einsum("tbgdn,tbgd->gdn", q, d_c))
            dd_a[sl] = torch.einsum("tbgdn,gdn->tbgd", q, Ag)
        ddelta = dd_a.add_(dx * ut)
        du = dx.mul_(dt)
        rev = reverse
        return (
            _from_time_major(du.view(length, batch, dim), rev),
            _from_time_major(ddelta.view(length, batch, dim), rev),
            dA.view(dim, nstate),
            _from_time_major(dB, rev),
            _from_time_major(dC, rev),
            None,
            None,
        )


def selective_scan_chunked(
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
    chunk_size: int | None = None,
):
    """Same contract as :func:`visionssm.ops.selective_scan` (state math in float32 or wider)."""
    out_dtype = u.dtype
    dtype = torch.promote_types(u.dtype, torch.float32)
    batch, dim, length = u.shape
    B, C = grouped_bc(B, C, u.shape[1])
    uf = u.to(dtype)
    delta = delta.to(dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    if chunk_size is None:
        chunk_size = default_chunk_size(batch, dim, A.shape[1], length, torch.finfo(dtype).bits // 8)
    y, last = _ChunkedScan.apply(uf, delta, A.to(dtype), B.to(dtype), C.to(dtype), reverse, chunk_size)
    if D is not None:
        y = y + D.to(dtype)[:, None] * uf
    if z is not None:
        y = y * F.silu(z.to(dtype))
    y = y.to(out_dtype)
    return (y, last) if return_last_state else y
