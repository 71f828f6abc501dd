"""Pure-PyTorch SSD paths (differentiable through autograd, any device, float64-capable).

Causal: Mamba-2's chunked algorithm (state-spaces/mamba mamba_ssm/modules/ssd_minimal.py describes it): inside a
chunk of Q tokens the quadratic form (C B^T masked by the decays) is a batched matmul; each chunk also summarises
itself as one (headdim, N) state; a short loop over chunks carries the states; each chunk then reads its entering
state through C. Groups are never expanded to heads: heads are viewed as (groups, heads per group) and B, C
broadcast. Work O(L Q (N + P) + L P N), memory O(L Q) per head.

Non-causal and HSM-SSD are two matmuls around a global state and are written as such.
All paths compute in float32 or wider and return the input dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .reference import compute_dtype, discretize, skip_term


def _pad_time(t: torch.Tensor, pad: int) -> torch.Tensor:
    """Zero-pad axis 1 (time) at the end; dt = 0 there means no decay and no input, so padding is inert."""
    if pad == 0:
        return t
    return torch.cat([t, t.new_zeros(t.shape[0], pad, *t.shape[2:])], dim=1)


def ssd_causal_chunked(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int = 64,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    initial_state: torch.Tensor | None = None,
    return_last_state: bool = False,
):
    out_dtype, dtype = x.dtype, compute_dtype(x)
    batch, length, heads, headdim = x.shape
    groups, nstate = B.shape[2], B.shape[3]
    rep = heads // groups
    Q = max(1, min(chunk_size, length))
    nc = -(-length // Q)
    pad = nc * Q - length
    xf = x.to(dtype)
    dtf = discretize(dt, dt_bias, dt_softplus, dtype)
    xc = _pad_time(xf, pad).view(batch, nc, Q, groups, rep, headdim)
    dtc = _pad_time(dtf, pad).view(batch, nc, Q, groups, rep)
    Bc = _pad_time(B.to(dtype), pad).view(batch, nc, Q, groups, nstate)
    Cc = _pad_time(C.to(dtype), pad).view(batch, nc, Q, groups, nstate)
    a = dtc * A.to(dtype).view(groups, rep)  # (b, c, Q, g, r) log-decays
    cs = torch.cumsum(a, dim=2)
    # Intra-chunk: y_i += sum_{j<=i} (C_i . B_j) exp(cs_i - cs_j) dt_j x_j
    causal = torch.tril(torch.ones(Q, Q, dtype=torch.bool, device=x.device))
    diff = cs[:, :, :, None] - cs[:, :, None, :]  # (b, c, i, j, g, r)
    decay = torch.exp(diff.masked_fill(~causal[:, :, None, None], float("-inf")))
    CB = torch.einsum("bcign,bcjgn->bcijg", Cc, Bc)
    y = torch.einsum("bcijg,bcijgr,bcjgr,bcjgrp->bcigrp", CB, decay, dtc, xc)
    # Each chunk's own contribution to the state leaving it.
    to_end = torch.exp(cs[:, :, -1:] - cs) * dtc  # (b, c, Q, g, r)
    chunk_states = torch.einsum("bcjgn,bcjgr,bcjgrp->bcgrpn", Bc, to_end, xc)
    # Carry states across chunks (sequential, nc steps of O(P N)).
    chunk_decay = torch.exp(cs[:, :, -1])  # (b, c, g, r)
    if initial_state is None:
        state = xf.new_zeros(batch, groups, rep, headdim, nstate)
    else:
        state = initial_state.to(dtype).view(batch, groups, rep, headdim, nstate)
    entering = []
    for c in range(nc):
        entering.append(state)
        state = chunk_decay[:, c, :, :, None, None] * state + chunk_states[:, c]
    entering = torch.stack(entering, dim=1)  # (b, c, g, r, P, N)
    y = y + torch.exp(cs)[..., None] * torch.einsum("bcign,bcgrpn->bcigrp", Cc, entering)
    y = y.reshape(batch, nc * Q, heads, headdim)[:, :length]
    if D is not None:
        y = y + skip_term(D.to(dtype), xf)
    if z is not None:
        y = y * F.silu(z.to(dtype))
    y = y.to(out_dtype)
    return (y, state.reshape(batch, heads, headdim, nstate)) if return_last_state else y


def _head_view(t: torch.Tensor, groups: int, interleaved: bool) -> torch.Tensor:
    """(b, L, heads, ...) -> (b, L, groups, heads/groups, ...) with head h in group h // (heads/groups) (or h % g)."""
    b, length, heads = t.shape[:3]
    if interleaved:
        return t.view(b, length, heads // groups, groups, *t.shape[3:]).transpose(2, 3)
    return t.view(b, length, groups, heads // groups, *t.shape[3:])


def _head_unview(t: torch.Tensor, interleaved: bool) -> torch.Tensor:
    b, length, groups, rep = t.shape[:4]
    if interleaved:
        t = t.transpose(2, 3)
    return t.reshape(b, length, groups * rep, *t.shape[4:])


def ssd_noncausal_matmul(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    interleaved: bool = False,
    dtype: torch.dtype | None = None,
):
    """state = (w B)^T x per head (one matmul per group with heads side by side), y = C state + D x.

    ``dtype`` None computes in float32 or wider; x's dtype gives VSSD's own (AMP) computation, the benchmark's
    baseline for the Triton path."""
    out_dtype = x.dtype
    dtype = dtype or compute_dtype(x)
    groups = B.shape[2]
    xf = x.to(dtype)
    w = discretize(dt, dt_bias, dt_softplus, torch.promote_types(dtype, torch.float32)) * A
    xw = (xf * w[..., None].to(dtype))
    state = torch.einsum("bjgn,bjgrp->bgrpn", B.to(dtype), _head_view(xw, groups, interleaved))
    y = _head_unview(torch.einsum("bign,bgrpn->bigrp", C.to(dtype), state), interleaved)
    if D is not None:
        y = y + skip_term(D.to(dtype), xf)
    return y.to(out_dtype)


def hsm_ssd_matmul(x, dt, B, C, W_hz, W_out, D, A=None, dtype: torch.dtype | None = None):
    """HSM-SSD as plain matmuls. The A offset is added as in the official code: softmax over L cancels it, but
    keeping it in the graph gives A a (zero) gradient, so DDP and optimisers see the parameter used."""
    out_dtype = x.dtype
    dtype = dtype or compute_dtype(x)
    wide = torch.promote_types(dtype, torch.float32)
    logits = dt.to(wide)
    if A is not None:
        logits = logits + A.to(wide)[:, None]
    aB = (torch.softmax(logits, dim=-1) * B.to(wide)).to(dtype)
    h = torch.matmul(x.to(dtype), aB.transpose(-1, -2))
    y, h2 = hsm_mix_readout(h, C, W_hz, W_out, D, dtype)
    return y.to(out_dtype), h2.to(out_dtype)


def hsm_mix_readout(h, C, W_hz, W_out, D, dtype):
    """The N-column part of HSM-SSD: [h1; g] = W_hz h, h2 = W_out (h1 (silu(g) + D)), y = h2 C."""
    h1, g = torch.matmul(W_hz.to(dtype), h).chunk(2, dim=1)
    h2 = torch.matmul(W_out.to(dtype), h1 * (F.silu(g) + D.to(dtype)))
    return torch.matmul(h2, C.to(dtype)), h2
