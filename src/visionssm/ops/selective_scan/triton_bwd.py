"""Triton backward kernel of the selective scan.

Walks the chunks of one (batch, channel block) in the opposite order of the forward scan. For each chunk
it recomputes the states from the chunk start the forward kernel saved, then runs the adjoint recurrence
adj_t = C_t dy_t + exp(delta_{t+1} A) adj_{t+1} as a second associative scan (the next step's decay is
recomputed from a shifted load of delta, since registers cannot be shifted). Gradients of B and C are
summed over the channels of a group with float32 atomics; those of A, D and delta_bias over the batch.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .triton_fwd import LOG2E, _linear_combine, _softplus


@triton.jit
def selective_scan_bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr, dlast_ptr, starts_ptr,
    du_ptr, ddelta_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dz_ptr, dbias_ptr,
    L, dim, dim_per_group, n_state, n_groups,
    s_ub, s_ud, s_ul,
    s_db, s_dd, s_dl,
    s_zb, s_zd, s_zl,
    s_gb, s_gd, s_gl,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    REVERSE: tl.constexpr, HAS_DLAST: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):
    # B, C, dB, dC: contiguous (batch, groups, N, L); starts: contiguous (batch, dim, n_chunks, N);
    # du, ddelta, dz: contiguous (batch, dim, L); dA: (dim, N); dD, dbias: (dim,).
    pid_b = tl.program_id(0)
    pid_d = tl.program_id(1)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    n_ok = n < n_state
    g = (pid_d * BLOCK_D) // dim_per_group
    A = tl.load(A_ptr + d[:, None] * n_state + n[None, :], mask=n_ok[None, :], other=0.0).to(tl.float32)
    A2 = A * LOG2E
    if HAS_D:
        Dv = tl.load(D_ptr + d).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d).to(tl.float32)
    if HAS_DLAST:
        carry = tl.load(dlast_ptr + (pid_b * dim + d[:, None]) * n_state + n[None, :], mask=n_ok[None, :], other=0.0)
    else:
        carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dA_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dD_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    n_chunks = tl.cdiv(L, BLOCK_L)
    lane = tl.arange(0, BLOCK_L)
    bc_base = (pid_b * n_groups + g) * n_state * L
    for cc in range(n_chunks):
        c = n_chunks - 1 - cc
        if REVERSE:
            t = L - (c + 1) * BLOCK_L + lane
            tn = t - 1
        else:
            t = c * BLOCK_L + lane
            tn = t + 1
        t_ok = (t >= 0) & (t < L)
        m2 = t_ok[None, :]
        mn = n_ok[:, None] & t_ok[None, :]
        u = tl.load(u_ptr + pid_b * s_ub + d[:, None] * s_ud + t[None, :] * s_ul, mask=m2, other=0.0).to(tl.float32)
        x = tl.load(delta_ptr + pid_b * s_db + d[:, None] * s_dd + t[None, :] * s_dl, mask=m2, other=0.0)
        x = x.to(tl.float32)
        tn_ok = (tn >= 0) & (tn < L) & t_ok
        xn = tl.load(delta_ptr + pid_b * s_db + d[:, None] * s_dd + tn[None, :] * s_dl, mask=tn_ok[None, :], other=0.0)
        xn = xn.to(tl.float32)
        if HAS_BIAS:
            x = x + bias[:, None]
            xn = xn + bias[:, None]
        if SOFTPLUS:
            dt = _softplus(x)
            dtn = _softplus(xn)
        else:
            dt = x
            dtn = xn
        Bv = tl.load(B_ptr + bc_base + n[:, None] * L + t[None, :], mask=mn, other=0.0).to(tl.float32)
        Cv = tl.load(C_ptr + bc_base + n[:, None] * L + t[None, :], mask=mn, other=0.0).to(tl.float32)
        h0 = tl.load(starts_ptr + ((pid_b * dim + d[:, None]) * n_chunks + c) * n_state + n[None, :],
                     mask=n_ok[None, :], other=0.0)
        # Recompute the chunk's states.
        decay = tl.where(t_ok[None, None, :], tl.exp2(dt[:, None, :] * A2[:, :, None]), 1.0)
        dtu = dt * u
        inp = dtu[:, None, :] * Bv[None, :, :]
        acc_a, acc_b = tl.associative_scan((decay, inp), axis=2, combine_fn=_linear_combine, reverse=REVERSE)
        states = acc_b + acc_a * h0[:, :, None]
        dy = tl.load(dout_ptr + pid_b * s_gb + d[:, None] * s_gd + t[None, :] * s_gl, mask=m2, other=0.0)
        dy = dy.to(tl.float32)
        if HAS_Z:
            z = tl.load(z_ptr + pid_b * s_zb + d[:, None] * s_zd + t[None, :] * s_zl, mask=m2, other=0.0)
            z = z.to(tl.float32)
            y = tl.sum(states * Cv[None, :, :], axis=1)
            if HAS_D:
                y += Dv[:, None] * u
            sz = tl.sigmoid(z)
            dz = dy * y * sz * (1.0 + z * (1.0 - sz))
            tl.store(dz_ptr + (pid_b * dim + d[:, None]) * L + t[None, :], dz.to(dz_ptr.dtype.element_ty), mask=m2)
            dy = dy * z * sz
        if HAS_D:
            dD_acc += tl.sum(dy * u, axis=1)
            du = dy * Dv[:, None]
        else:
            du = tl.zeros((BLOCK_D, BLOCK_L), dtype=tl.float32)
        # Adjoint scan, against the forward direction.
        decay_next = tl.where(tn_ok[None, None, :], tl.exp2(dtn[:, None, :] * A2[:, :, None]), 1.0)
        src = Cv[None, :, :] * dy[:, None, :]
        adj_a, adj_b = tl.associative_scan((decay_next, src), axis=2, combine_fn=_linear_combine,
                                           reverse=not REVERSE)
        adj = adj_b + adj_a * carry[:, :, None]
        if REVERSE:
            carry = tl.sum(tl.where((lane == BLOCK_L - 1)[None, None, :], adj, 0.0), axis=2)
        else:
            carry = tl.sum(tl.where((lane == 0)[None, None, :], adj, 0.0), axis=2)
        adj = tl.where(t_ok[None, None, :], adj, 0.0)
        dB_part = tl.sum(adj * dtu[:, None, :], axis=0)
        dC_part = tl.sum(states * dy[:, None, :], axis=0)
        tl.atomic_add(dB_ptr + bc_base + n[:, None] * L + t[None, :], dB_part, mask=mn)
        tl.atomic_add(dC_ptr + bc_base + n[:, None] * L + t[None, :], dC_part, mask=mn)
        ddtu = tl.sum(adj * Bv[None, :, :], axis=1)
        q = adj * (states - inp)  # adj_t * decay_t * h_{t-1}: grad of (delta_t A)
        ddt = tl.sum(q * A[:, :, None], axis=1) + ddtu * u
        du += ddtu * dt
        dA_acc += tl.sum(q * dt[:, None, :], axis=2)
        if SOFTPLUS:
            ddt = ddt * tl.sigmoid(x)
        ddt = tl.where(m2, ddt, 0.0)
        dbias_acc += tl.sum(ddt, axis=1)
        tl.store(du_ptr + (pid_b * dim + d[:, None]) * L + t[None, :], du.to(du_ptr.dtype.element_ty), mask=m2)
        tl.store(ddelta_ptr + (pid_b * dim + d[:, None]) * L + t[None, :], ddt.to(ddelta_ptr.dtype.element_ty),
                 mask=m2)
    tl.atomic_add(dA_ptr + d[:, None] * n_state + n[None, :], dA_acc, mask=n_ok[None, :])
    if HAS_D:
        tl.atomic_add(dD_ptr + d, dD_acc)
    if HAS_BIAS:
        tl.atomic_add(dbias_ptr + d, dbias_acc)
