"""Reference SSD ops: the closed (quadratic, attention-like) forms, plus the sequential recurrences they equal.

Written for clarity and float64 ground truth; differentiable through autograd; O(L^2) memory for the causal op.
No other backend's code is reused here.

Shapes (Mamba-2's): x ``(batch, L, heads, headdim)``, dt ``(batch, L, heads)``, A ``(heads,)``,
B, C ``(batch, L, groups, N)``. Head h reads group h // (heads / groups), or h % groups when ``interleaved``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def heads_of_groups(BC: torch.Tensor, heads: int, interleaved: bool = False) -> torch.Tensor:
    """(batch, L, groups, N) -> (batch, L, heads, N)."""
    groups = BC.shape[2]
    if interleaved:
        return BC.repeat(1, 1, heads // groups, 1)
    return BC.repeat_interleave(heads // groups, dim=2)


def discretize(dt: torch.Tensor, dt_bias: torch.Tensor | None, dt_softplus: bool, dtype: torch.dtype) -> torch.Tensor:
    dt = dt.to(dtype)
    if dt_bias is not None:
        dt = dt + dt_bias.to(dtype)
    return F.softplus(dt) if dt_softplus else dt


def skip_term(D: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """D (heads,) or (heads, headdim) times x (batch, L, heads, headdim)."""
    return (D[:, None] if D.dim() == 1 else D) * x


def segsum(a: torch.Tensor) -> torch.Tensor:
    """a (..., L) -> (..., L, L) with [i, j] = a[j+1] + ... + a[i] for j <= i and -inf above the diagonal.

    Built from masked cumsums, not cumsum differences, so no cancellation error for long sequences."""
    length = a.shape[-1]
    rep = a[..., :, None].expand(*a.shape, length)  # [i, j] = a[i]
    lower = torch.tril(torch.ones(length, length, dtype=torch.bool, device=a.device), -1)
    summed = rep.masked_fill(~lower, 0).cumsum(-2)
    keep = torch.tril(torch.ones(length, length, dtype=torch.bool, device=a.device))
    return summed.masked_fill(~keep, float("-inf"))


def ssd_causal_reference(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    initial_state: torch.Tensor | None = None,
    return_last_state: bool = False,
):
    """Quadratic form of Mamba-2's SSD (scalar decay per head):

    y_i = sum_{j<=i} (C_i . B_j) exp(a_{j+1} + ... + a_i) dt_j x_j + exp(a_1 + ... + a_i) C_i . h0 + D x_i,
    with a = dt * A; y *= silu(z). Last state h_L = sum_j exp(a_{j+1} + ... + a_L) dt_j x_j B_j^T + exp(sum a) h0,
    shape (batch, heads, headdim, N), float32 or wider.
    """
    out_dtype, dtype = x.dtype, compute_dtype(x)
    heads = x.shape[2]
    x = x.to(dtype)
    dt = discretize(dt, dt_bias, dt_softplus, dtype)  # (b, L, h)
    Bh = heads_of_groups(B.to(dtype), heads)
    Ch = heads_of_groups(C.to(dtype), heads)
    a = (dt * A.to(dtype)).transpose(1, 2)  # (b, h, L) log-decays
    decay = torch.exp(segsum(a))  # (b, h, i, j)
    scores = torch.einsum("bihn,bjhn->bhij", Ch, Bh) * decay * dt.transpose(1, 2)[:, :, None, :]
    y = torch.einsum("bhij,bjhp->bihp", scores, x)
    total = torch.cumsum(a, -1)  # (b, h, L): decay from the start through token i
    if initial_state is not None:
        h0 = initial_state.to(dtype)
        y = y + torch.exp(total).transpose(1, 2)[..., None] * torch.einsum("bihn,bhpn->bihp", Ch, h0)
    if D is not None:
        y = y + skip_term(D.to(dtype), x)
    if z is not None:
        y = y * F.silu(z.to(dtype))
    y = y.to(out_dtype)
    if not return_last_state:
        return y
    to_end = decay[:, :, -1, :] * dt.transpose(1, 2)  # (b, h, j)
    last = torch.einsum("bhj,bjhp,bjhn->bhpn", to_end, x, Bh)
    if initial_state is not None:
        last = last + torch.exp(total[:, :, -1])[..., None, None] * h0
    return y, last


def ssd_causal_sequential(
    x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False, initial_state=None, return_last_state=False
):
    """The recurrence the quadratic form equals: h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T, y_t = h_t C_t."""
    out_dtype, dtype = x.dtype, compute_dtype(x)
    batch, length, heads, headdim = x.shape
    x = x.to(dtype)
    dt = discretize(dt, dt_bias, dt_softplus, dtype)
    Bh = heads_of_groups(B.to(dtype), heads)
    Ch = heads_of_groups(C.to(dtype), heads)
    h = x.new_zeros(batch, heads, headdim, B.shape[-1]) if initial_state is None else initial_state.to(dtype)
    ys = []
    for t in range(length):
        decay = torch.exp(dt[:, t] * A.to(dtype))[:, :, None, None]
        h = decay * h + (dt[:, t, :, None] * x[:, t])[..., None] * Bh[:, t, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", h, Ch[:, t]))
    y = torch.stack(ys, dim=1)
    if D is not None:
        y = y + skip_term(D.to(dtype), x)
    if z is not None:
        y = y * F.silu(z.to(dtype))
    y = y.to(out_dtype)
    return (y, h) if return_last_state else y


def ssd_noncausal_reference(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    interleaved: bool = False,
):
    """VSSD's non-causal SSD in its attention form: y_i = sum_j (C_i . B_j) w_j x_j + D x_i, w = dt * A.

    No decay, no mask, no normalisation (YuHengsss/VSSD classification/models/mamba2.py, non_casual_linear_attn).
    """
    out_dtype, dtype = x.dtype, compute_dtype(x)
    heads = x.shape[2]
    x = x.to(dtype)
    w = discretize(dt, dt_bias, dt_softplus, dtype) * A.to(dtype)  # (b, L, h)
    Bh = heads_of_groups(B.to(dtype), heads, interleaved)
    Ch = heads_of_groups(C.to(dtype), heads, interleaved)
    scores = torch.einsum("bihn,bjhn->bhij", Ch, Bh) * w.transpose(1, 2)[:, :, None, :]
    y = torch.einsum("bhij,bjhp->bihp", scores, x)
    if D is not None:
        y = y + skip_term(D.to(dtype), x)
    return y.to(out_dtype)


def ssd_noncausal_multiscan(x, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, interleaved=False):
    """The paper's derivation of the same op: a forward and a backward causal scan without decay, weights w = dt*A,
    added, minus the current token counted twice (arXiv 2407.18559, NC-SSD). Used as a test oracle."""
    dtype = compute_dtype(x)
    heads = x.shape[2]
    w = discretize(dt, dt_bias, dt_softplus, dtype) * A.to(dtype)
    Bh = heads_of_groups(B.to(dtype), heads, interleaved)
    Ch = heads_of_groups(C.to(dtype), heads, interleaved)
    xs = x.to(dtype)
    no_decay = torch.zeros(heads, dtype=dtype, device=x.device)
    fwd = ssd_causal_sequential(xs, w, no_decay, Bh, Ch)
    flip = lambda t: t.flip(1)
    bwd = flip(ssd_causal_sequential(flip(xs), flip(w), no_decay, flip(Bh), flip(Ch)))
    own = torch.einsum("bihn,bihn->bih", Ch, Bh)[..., None] * w[..., None] * xs
    y = fwd + bwd - own
    if D is not None:
        y = y + skip_term(D.to(dtype), xs)
    return y.to(x.dtype)


def hsm_ssd_reference(
    x: torch.Tensor,
    dt: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    W_hz: torch.Tensor,
    W_out: torch.Tensor,
    D: torch.Tensor,
    A: torch.Tensor | None = None,
):
    """EfficientViM's HSM-SSD (mlvlab/EfficientViM classification/models/EfficientViM.py, HSMSSD.forward).

    x (batch, dim, L); dt, B, C (batch, N, L); W_hz (2*inner, dim); W_out (dim, inner); D (1,); A (N,) or None.
    a = softmax_L(dt + A);  h = x (a*B)^T  (batch, dim, N);  [h1; g] = W_hz h;  h2 = W_out (h1 silu(g) + D h1);
    y = h2 C  (batch, dim, L).  Returns (y, h2).  A is constant along L, so it cancels in the softmax.
    """
    out_dtype, dtype = x.dtype, compute_dtype(x)
    logits = dt.to(dtype) if A is None else dt.to(dtype) + A.to(dtype)[:, None]
    a = torch.softmax(logits, dim=-1)
    h = x.to(dtype) @ (a * B.to(dtype)).transpose(-1, -2)
    h1, g = (W_hz.to(dtype) @ h).chunk(2, dim=1)
    h2 = W_out.to(dtype) @ (h1 * F.silu(g) + D.to(dtype) * h1)
    y = h2 @ C.to(dtype)
    return y.to(out_dtype), h2.to(out_dtype)
