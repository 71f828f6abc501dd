"""Fast pure-PyTorch selective scan for CPU (and a fallback anywhere).

Why it is shaped this way: on a CPU the scan is bound by memory traffic and op overhead, not arithmetic.
Whole-sequence tensors of shape (batch, L, dim, N) fall out of cache and every pass over them costs
milliseconds, while a step of the recurrence on a (batch, dim, N) slice stays in cache. So time is cut into
chunks of ``chunk_size`` steps: per chunk the decays exp(delta A) and inputs delta B u are built in one
vectorized pass each, the recurrence runs one fused multiply-add per step into a chunk buffer, and the output
contraction with C is a batched matmul. Only the state at each chunk start is saved; the backward pass
recomputes a chunk's states from it and runs the adjoint recurrence against the scan order.

Layout: token-major, (batch, L, dim) inside. Vision mixers produce delta, B, C and z as transposed views of
token-major projections, so they enter without copies; the output is returned as a (batch, dim, L) view of
token-major memory, which the mixer's out_proj reads without a copy. ``reverse`` walks the chunks and steps
right to left: no flipped copies. The decays use exp2 with A pre-scaled by log2(e): the same values up to
rounding, and several times faster than exp on x86 CPUs.

Exact up to rounding: the sequential recurrence is evaluated as written, no exp(-cumsum) tricks that
overflow.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import _alloc, _autograd, _flops
from .reference import grouped_bc

# Chunk length from the per-sample state size only, so results do not depend on how a batch is split
# (data-parallel ranks vs one process round identically). ~160 KiB of state per sample and chunk: at
# Vim-Ti shapes (dim 384, N 16) T = 6, in the measured optimum T = 4..10 at batch 8 on 1 EPYC core (the
# double-buffered decays + states then stay near the L2 size); 7% slower than T = 33 at batch 1.
_CHUNK_BYTES_PER_SAMPLE = 160 << 10
_LOG2E = 1.0 / math.log(2.0)


def default_chunk_size(batch: int, dim: int, nstate: int, length: int, itemsize: int = 4) -> int:
    """Steps per chunk (``batch`` is accepted for the signature's sake and deliberately not used)."""
    per_step = dim * nstate * itemsize
    return int(max(1, min(length, _CHUNK_BYTES_PER_SAMPLE // max(per_step, 1))))


def _chunks(length: int, T: int, reverse: bool) -> list[tuple[int, int, int]]:
    """(chunk index, first position, size) in scan order."""
    out = [(c, t0, min(T, length - t0)) for c, t0 in enumerate(range(0, length, T))]
    return out[::-1] if reverse else out


def _chunk_major(x: torch.Tensor, T: int, n_chunks: int) -> torch.Tensor:
    """(batch, L, ...) -> (n_chunks, batch, T, ...), zero-padded at the end of the sequence."""
    batch, length = x.shape[:2]
    if n_chunks * T != length:
        x = torch.cat([x, x.new_zeros(batch, n_chunks * T - length, *x.shape[2:])], 1)
    return x.view(batch, n_chunks, T, *x.shape[2:]).transpose(0, 1).contiguous()


def _fill_chunk(decay, states, d_c, du_c, B_c, A2):
    """decay = exp(delta A) (as exp2 of delta * A log2 e), states = delta u B: (batch, n, groups, N, dg)."""
    torch.mul(d_c.unsqueeze(-2), A2, out=decay)
    torch.exp2(decay, out=decay)
    torch.mul(B_c.unsqueeze(-1), du_c.unsqueeze(-2), out=states)


def _recur(decay, states, start, reverse: bool):
    """In place: states[:, p] += decay[:, p] * previous state, in scan order; returns the last state."""
    n = states.shape[1]
    prev = start
    for p in range(n - 1, -1, -1) if reverse else range(n):
        states[:, p].addcmul_(decay[:, p], prev)
        prev = states[:, p]
    return prev


class _ChunkedScan(torch.autograd.Function):
    """Core recurrence y_t = <C_t, h_t>, h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t (no D, no gate).

    Token-major: u, delta (batch, L, dim); B, C (batch, L, groups, N); returns y (batch, L, dim) and the
    last state (batch, dim, N). States are held as (batch, t, groups, N, dim/groups): channels innermost, so
    the contraction with C is a row-vector matmul (several times faster on CPU than a per-channel matvec).
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, reverse: bool, chunk_size: int, save: bool):
        batch, length, dim = u.shape
        groups, nstate = B.shape[2], A.shape[1]
        dg = dim // groups
        ut = u.view(batch, length, groups, dg)
        dt = delta.view(batch, length, groups, dg)
        du = dt * ut
        At = A.view(groups, dg, nstate).transpose(1, 2)  # (groups, N, dg)
        A2 = (At * _LOG2E).contiguous()
        T = min(chunk_size, length)
        chunks = _chunks(length, T, reverse)
        dtype, device = u.dtype, u.device
        # C and y chunk-major, (chunk, batch, T, ...): a full chunk's contraction reads and writes contiguous
        # blocks, so no per-chunk copies (the sequence end is padded to whole chunks).
        Cc = _chunk_major(C, T, len(chunks))
        y = _alloc.empty(len(chunks), batch, T, groups, dg, dtype=dtype, device=device)
        # Two (decay, states) buffers used in turn: the state carried into a chunk is the last step of the
        # other buffer, read in place. Per-step views are made once.
        bufs = []
        for _ in range(min(2, len(chunks))):
            dec = _alloc.empty(batch, T, groups, nstate, dg, dtype=dtype, device=device)
            st = _alloc.empty_like(dec)
            bufs.append((dec, st, dec.unbind(1), st.unbind(1)))
        starts = _alloc.empty(len(chunks), batch, groups, nstate, dg, dtype=dtype, device=device) if save else None
        h = u.new_zeros(batch, groups, nstate, dg)
        counting = bool(_flops._active)  # a count_op_flops() context is open
        for i, (c, t0, n) in enumerate(chunks):
            dec, st, dec_steps, st_steps = bufs[i % 2]
            if save:
                starts[c].copy_(h)
            if n < T:  # the last chunk: own contiguous buffers (out= arguments must be contiguous to trace)
                dec = _alloc.empty(batch, n, groups, nstate, dg, dtype=dtype, device=device)
                st = _alloc.empty_like(dec)
                dec_steps, st_steps = dec.unbind(1), st.unbind(1)
            _fill_chunk(dec, st, dt[:, t0 : t0 + n], du[:, t0 : t0 + n], B[:, t0 : t0 + n], A2)
            for p in range(n - 1, -1, -1) if reverse else range(n):
                st_steps[p].addcmul_(dec_steps[p], h)
                h = st_steps[p]
            # y[b, t, g, :] = C[b, t, g] @ states[b, t, g]: one batched row-vector matmul over (b, t, g).
            # Inside a FLOP count the same sum avoids aten matmuls, which counters would add to the
            # analytic scan count (_flops.add in the public function) a second time.
            if counting:
                y[c, :, :n] = (Cc[c, :, :n].unsqueeze(-1) * st).sum(-2)
            elif n == T:
                torch.matmul(Cc[c].unsqueeze(-2), st, out=y[c].unsqueeze(-2))
            else:
                y[c, :, :n] = torch.matmul(Cc[c, :, :n].unsqueeze(-2), st).squeeze(-2)
        if save:
            ctx.save_for_backward(ut, dt, At, B, C, starts)
        ctx.reverse, ctx.chunk = reverse, T
        last = h.transpose(-1, -2).reshape(batch, dim, nstate)
        y = y.transpose(0, 1).reshape(batch, len(chunks) * T, dim)[:, :length]
        return y, last

    @staticmethod
    def backward(ctx, dy, dlast):
        ut, dt, At, Bt, Ct, starts = ctx.saved_tensors
        reverse, T = ctx.reverse, ctx.chunk
        batch, length, groups, dg = ut.shape
        nstate = At.shape[1]
        dtype, device = ut.dtype, ut.device
        A2 = (At * _LOG2E).contiguous()
        dyt = dy.to(dtype).view(batch, length, groups, dg)
        du = dt * ut
        decay = _alloc.empty(batch, T, groups, nstate, dg, dtype=dtype, device=device)
        states = _alloc.empty_like(decay)
        adj = _alloc.empty_like(decay)
        dx = _alloc.empty(batch, length, groups, dg, dtype=dtype, device=device)  # grad of delta * u
        dd_a = _alloc.empty_like(dx)  # grad of delta through the decay
        dB = _alloc.empty_like(Bt)
        dC = _alloc.empty_like(Ct)
        dA = torch.zeros_like(At)
        carry = (
            dlast.to(dtype).view(batch, groups, dg, nstate).transpose(-1, -2).clone()
            if dlast is not None
            else torch.zeros(batch, groups, nstate, dg, dtype=dtype, device=device)
        )
        for c, t0, n in reversed(_chunks(length, T, reverse)):
            sl = slice(t0, t0 + n)
            d_c, du_c, B_c, C_c, dy_c = dt[:, sl], du[:, sl], Bt[:, sl], Ct[:, sl], dyt[:, sl]
            dec, st, ad = decay, states, adj
            if n < T:  # the last chunk: own contiguous buffers (out= arguments must be contiguous to trace)
                dec = _alloc.empty(batch, n, groups, nstate, dg, dtype=dtype, device=device)
                st, ad = _alloc.empty_like(dec), _alloc.empty_like(dec)
            # Recompute the chunk's states from its saved start.
            _fill_chunk(dec, st, d_c, du_c, B_c, A2)
            _recur(dec, st, starts[c], reverse)
            # dC[b, t, g, n] = sum_d states[b, t, g, n, d] dy[b, t, g, d]. Contractions over the contiguous
            # channel axis are mul + sum: CPU bmm runs these tiny matrix-vector products one by one.
            dC[:, sl] = (st * dy_c.unsqueeze(-2)).sum(-1)
            # Adjoint of the state against the scan order: adj_t = C_t dy_t + decay_next adj_next.
            torch.mul(C_c.unsqueeze(-1), dy_c.unsqueeze(-2), out=ad)
            first, last = (n - 1, 0) if reverse else (0, n - 1)
            ad[:, last].add_(carry)
            steps = range(1, n) if reverse else range(n - 2, -1, -1)
            step = -1 if reverse else 1
            for p in steps:
                ad[:, p].addcmul_(dec[:, p + step], ad[:, p + step])
            carry = dec[:, first] * ad[:, first]
            dB[:, sl] = (ad * du_c.unsqueeze(-2)).sum(-1)
            dx[:, sl] = torch.matmul(B_c.unsqueeze(-2), ad).squeeze(-2)
            # q_t = adj_t * decay_t * h_{t-1}: the grad of (delta_t A) in the decay (h_{t-1} in scan order).
            q = dec.mul_(ad)
            if n > 1:
                if reverse:
                    q[:, : n - 1].mul_(st[:, 1:])
                else:
                    q[:, 1:].mul_(st[:, : n - 1])
            q[:, first].mul_(starts[c])
            dA.add_((q * d_c.unsqueeze(-2)).sum((0, 1)))
            dd_a[:, sl] = (q * At).sum(-2)
        ddelta = dd_a.add_(dx * ut)
        dut = dx.mul_(dt)
        shape = (batch, length, groups * dg)
        dA = dA.transpose(1, 2).reshape(groups * dg, nstate)
        return dut.view(shape), ddelta.view(shape), dA, dB, dC, None, None, None


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
    """Same contract as :func:`visionssm.ops.selective_scan` (state math in float32 or wider).

    y is returned as a (batch, dim, L) view of token-major memory (see the module docstring).
    """
    out_dtype = u.dtype
    dtype = torch.promote_types(u.dtype, torch.float32)
    batch, dim, length = u.shape
    B, C = grouped_bc(B, C, dim)
    # Token-major copies only where the caller's memory is channel-major (contiguous() is free otherwise).
    ut = u.to(dtype).transpose(1, 2).contiguous()
    dt = delta.to(dtype).transpose(1, 2)
    if delta_bias is not None:
        dt = dt + delta_bias.to(dtype)
    if delta_softplus:
        dt = F.softplus(dt)
    dt = dt.contiguous()
    Bt = B.to(dtype).permute(0, 3, 1, 2).contiguous()  # (batch, L, groups, N)
    Ct = C.to(dtype).permute(0, 3, 1, 2).contiguous()
    if chunk_size is None:
        chunk_size = default_chunk_size(batch, dim, A.shape[1], length, torch.finfo(dtype).bits // 8)
    tensors = (ut, dt, A, Bt, Ct)
    save = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)  # else keep no chunk states
    y, last = _autograd.apply(_ChunkedScan, ut, dt, A.to(dtype), Bt, Ct, reverse, chunk_size, save)
    if D is not None:
        y = torch.addcmul(y, ut, D.to(dtype))
    if z is not None:
        y = y * F.silu(z.to(dtype).transpose(1, 2))
    y = y.to(out_dtype).transpose(1, 2)
    return (y, last) if return_last_state else y
