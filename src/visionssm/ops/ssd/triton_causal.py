"""Autograd wrapper and launch configuration of the Triton causal SSD."""

from __future__ import annotations

import functools
import os

import torch

from .. import _alloc, _autograd
from .._host import cached_on_env, cdiv, next_pow2
from .._segment_carry import segment_carry
from .triton_causal_bwd import ssd_causal_bwd_kernel
from .triton_causal_fwd import ssd_causal_fwd_kernel

# Up to this many forward segments the output pass folds the earlier segments in itself (no segment_carry
# launch). Host-bound timing loops see every launch: ~50 us each on the H100 machine's host (benchmarks/
# host_breakdown.py), more than the few L2-resident state loads per program this costs.
FOLD_MAX_SEGMENTS = 16


@cached_on_env("VISIONSSM_SSD_CFG")
def launch_config(batch: int, heads: int, length: int, chunk_size: int, headdim: int = 64, nstate: int = 64,
                  backward: bool = False, inference: bool = False, n_sm: int = 132):
    """(CHUNK, n_chunks, seg_chunks, n_seg, fwd_warps, bwd_warps); ``backward=True``: the backward's segments;
    ``inference=True``: a forward that saves nothing for a backward.

    CHUNK: chunk_size rounded down to a power of two in [16, 32]. The fused kernels hold a chunk's (Q, Q) score
    tiles next to (Q, headdim) and (headdim, N) tiles; compiled for sm_90 at headdim = N = 64, the backward at
    Q = 64 spills ~1 KB per thread to local memory at any warp count (and Triton 3.6 fails to pipeline it), at
    Q = 32 about 0.1 KB (cuobjdump -res-usage). An inference forward has no backward to match, so it takes
    Q = 64 when chunk_size allows and the rows need no segments: H100 GPU time at (64, 197, 12, 64, 64) 0.077 ms
    vs 0.085-0.108 at Q = 32; with segments, at (8, 6085, 12, 64, 64), 0.30-0.32 vs 0.28 (Q = 64 spills
    there: 255 registers, 12.5% occupancy; ncu, benchmarks/sweep_ssd.py). Larger states (headdim * N > 64 * 64)
    take Q = 16 and 8 forward warps (at headdim = N = 128 the backward's shared memory is then 176 KB instead
    of 192 KB, and spills halve).
    Segments: rows (batch x heads) are cut into time segments when there are fewer than ``target`` / 2 rows
    (1024 for the forward, 2048 for the backward), about ``target`` programs in all. H100 sweep at
    (8, 6085, 12, 64, 64), GPU time of one forward: 0.28 ms at 1024 programs, 0.35 at 512 or 4096 (sweep_ssd);
    forward+backward 1.995 ms with 2048 backward programs and 4 warps vs 2.518 with 512 and 8
    (ssd_long_h100_run5.json). At (64, 197, 12, 64, 64) the 768 rows stay whole: a second pass over the
    inputs costs more there than the extra programs win.
    ``VISIONSSM_SSD_CFG=chunk,fwd_warps,bwd_warps,target[,bwd_target]`` overrides (sweeps; chunk up to 64)."""
    chunk, fwd_warps, bwd_warps, target, bwd_target = min(32, max(16, chunk_size)), 4, 4, 1024, 2048
    bp, bn = _blocks(headdim, nstate)
    if bp * bn > 64 * 64:
        chunk, fwd_warps = 16, 8
    if os.environ.get("VISIONSSM_SSD_CFG"):
        cfg = [int(v) for v in os.environ["VISIONSSM_SSD_CFG"].split(",")]
        chunk, fwd_warps, bwd_warps, target = cfg[:4]
        bwd_target = cfg[4] if len(cfg) > 4 else target
    if inference and chunk_size >= 64 and bp * bn <= 64 * 64 and batch * heads * 2 > target:
        chunk = 64
    chunk = 1 << (chunk.bit_length() - 1)
    n_chunks = cdiv(length, chunk)
    target = bwd_target if backward else target
    n_seg = max(1, min(target // (batch * heads), cdiv(n_chunks, 4)))
    seg_chunks = cdiv(n_chunks, n_seg)
    n_seg = cdiv(n_chunks, seg_chunks)
    if n_seg > 1 and chunk == 32 and fwd_warps == 4 and not os.environ.get("VISIONSSM_SSD_CFG"):
        # Segmented rows: the output pass at 2 warps. H100 GPU time of one forward at (8, 6085, 12, 64, 64):
        # 0.264 ms vs 0.303 at 4 warps and 0.46 at 8 (the 4-warp pass held 224 registers per thread, 2 programs
        # per SM; benchmarks/sweep_ssd.py). Whole rows on 64-token chunks keep 4 (0.079 vs 0.100 ms).
        fwd_warps = 2
        if not backward:
            # Then as many segments as fill one wave of the 2-warp pass (4 programs per SM on sm_90): on the
            # H100 (132 SMs) at (8, 6085, 12, 64, 64) that is 5 segments, 0.235 ms GPU time vs 0.254 with 10 (1.8
            # waves), 0.280 with 8 (1.45 waves) and 0.274 with 4 (sweep_ssd.py).
            n_seg = max(2, min((4 * n_sm) // (batch * heads), cdiv(n_chunks, 4)))
            seg_chunks = cdiv(n_chunks, n_seg)
            n_seg = cdiv(n_chunks, seg_chunks)
    return chunk, n_chunks, seg_chunks, n_seg, fwd_warps, bwd_warps


@functools.cache
def _sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 132


def _blocks(headdim: int, nstate: int):
    return max(16, next_pow2(headdim)), max(16, next_pow2(nstate))


@cached_on_env("VISIONSSM_SSD_BLOCKP")
def _p_split(headdim: int, nstate: int) -> tuple[int, int]:
    """(forward, backward) headdim block of one program; whole rows unless ``VISIONSSM_SSD_BLOCKP=fwd,bwd``.

    Splitting halves a program's registers but recomputes C B^T and the decays per block; on an H100 it lost
    at both benchmark shapes (GPU time at (8, 6085, 12, 64, 64): forward 0.48 ms with blocks of 32 vs 0.32
    whole, forward+backward 2.69 vs 1.39; benchmarks/sweep_ssd.py), so it stays a sweep option."""
    bp, _ = _blocks(headdim, nstate)
    fw, bw = bp, bp
    if os.environ.get("VISIONSSM_SSD_BLOCKP"):
        fw, bw = (int(t) for t in os.environ["VISIONSSM_SSD_BLOCKP"].split(","))
    return min(bp, max(16, fw)), min(bp, max(16, bw))


@cached_on_env("VISIONSSM_SSD_STAGES")
def _stages() -> tuple[dict, dict]:
    """Software-pipelining depth of the forward and backward chunk loops. The backward runs unpipelined:
    H100, GPU time of one forward+backward, 1.89 vs 2.00 ms at (8, 6085, 12, 64, 64) and 0.60 vs 0.63 ms at
    (64, 197, 12, 64, 64); the forward keeps Triton's default (1 stage: 0.335 vs 0.284 ms; sweep_ssd.py).
    ``VISIONSSM_SSD_STAGES=fwd,bwd`` overrides."""
    v = os.environ.get("VISIONSSM_SSD_STAGES")
    if not v:
        return {}, dict(num_stages=1)
    fw, bw = (int(t) for t in v.split(","))
    return dict(num_stages=fw), dict(num_stages=bw)


def _precision(dtype: torch.dtype) -> str:
    return "ieee" if dtype == torch.float32 else "tf32"  # "tf32" is ignored for 16-bit operands


class _TritonSSDCausal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dt, A, B, C, D, z, dt_bias, h0, softplus: bool, chunk_size: int, save: bool):
        batch, length, heads, headdim = x.shape
        groups, nstate = B.shape[2], B.shape[3]
        bp, bn = _blocks(headdim, nstate)
        fbp = _p_split(headdim, nstate)[0]
        n_pblk = cdiv(headdim, fbp)
        chunk, n_chunks, seg_chunks, n_seg, fwd_warps, bwd_warps = launch_config(
            batch * n_pblk, heads, length, chunk_size, headdim, nstate, inference=not save, n_sm=_sm_count(x.device))
        dev = x.device
        f32 = dict(dtype=torch.float32, device=dev)
        y = _alloc.empty(batch, length, heads, headdim, dtype=x.dtype, device=dev)
        last = _alloc.empty(batch, heads, headdim, nstate, **f32)
        states = _alloc.empty(batch * heads, n_chunks, headdim, nstate, dtype=x.dtype, device=dev) if save else last
        seg_end = _alloc.empty(batch * heads, n_seg, headdim, nstate, **f32) if n_seg > 1 else last
        seg_sum = _alloc.empty(batch * heads, n_seg, **f32) if n_seg > 1 else last
        opt = lambda t: t if t is not None else y
        zs = z.stride() if z is not None else (0, 0, 0, 0)
        args = (
            x, dt, A, B, C, opt(D), opt(z), opt(dt_bias), opt(h0), y, last, states, seg_end, seg_sum,
            length, heads, heads // groups, headdim, nstate, n_chunks, seg_chunks, n_seg,
            *x.stride(), *dt.stride(), *B.stride(), *C.stride(), *zs, *y.stride(),
        )
        flags = dict(
            HAS_D=D is not None, D_PER_CHANNEL=D is not None and D.dim() == 2, HAS_Z=z is not None,
            HAS_BIAS=dt_bias is not None, SOFTPLUS=softplus, HAS_H0=h0 is not None, SAVE_STATES=save,
            CARRY=n_seg > 1, FOLD=1 < n_seg <= FOLD_MAX_SEGMENTS, CHUNK=chunk, BLOCK_P=fbp, BLOCK_N=bn,
            PRECISION=_precision(x.dtype), num_warps=fwd_warps,
        )
        grid = (batch * heads, n_seg, n_pblk)
        if n_seg > 1:
            # The summary pass holds no output tiles: 4 warps whatever the output pass takes.
            ssd_causal_fwd_kernel[grid](*args, MODE=1, **dict(flags, num_warps=4), **_stages()[0])
            if not flags["FOLD"]:
                segment_carry(seg_sum, seg_end, h0, reverse=False)
        ssd_causal_fwd_kernel[grid](*args, MODE=0, **flags, **_stages()[0])
        ctx.save_for_backward(x, dt, A, B, C, D, z, dt_bias, h0, states)
        ctx.cfg = (softplus, chunk_size, bwd_warps, bp, bn)
        ctx.set_materialize_grads(False)  # an unused last state then costs no zero-filled gradient
        return y, last

    @staticmethod
    def backward(ctx, dout, dlast):
        x, dt, A, B, C, D, z, dt_bias, h0, states = ctx.saved_tensors
        softplus, chunk_size, warps, bp, bn = ctx.cfg
        batch, length, heads, headdim = x.shape
        groups, nstate = B.shape[2], B.shape[3]
        # The backward's own time segments (the forward saved the state entering every chunk, whatever its own).
        bbp = _p_split(headdim, nstate)[1]
        n_pblk = cdiv(headdim, bbp)
        chunk, n_chunks, seg_chunks, n_seg, _, _ = launch_config(batch * n_pblk, heads, length, chunk_size, headdim,
                                                                 nstate, backward=True)
        dev = x.device
        f32 = dict(dtype=torch.float32, device=dev)
        dx = _alloc.empty(batch, length, heads, headdim, dtype=x.dtype, device=dev)
        ddt = (torch.zeros(batch, length, heads, **f32) if n_pblk > 1
               else _alloc.empty(batch, length, heads, dtype=dt.dtype, device=dev))
        dz = _alloc.empty(batch, length, heads, headdim, dtype=z.dtype, device=dev) if z is not None else None
        rep = heads // groups
        bc = (lambda *s: torch.zeros(*s, **f32)) if rep > 1 or n_pblk > 1 else (lambda *s: _alloc.empty(*s, **f32))
        dBg, dCg = bc(batch, length, groups, nstate), bc(batch, length, groups, nstate)
        # One zero-filled buffer (one launch) for the atomically reduced per-head grads.
        n_d = D.numel() if D is not None else 0
        sums = torch.zeros(2 * heads + n_d, **f32)
        dA, dbias = sums[:heads], sums[heads : 2 * heads] if dt_bias is not None else None
        dD = sums[2 * heads :].view(D.shape) if D is not None else None
        if dout is None:  # only the last state was used
            dout = torch.zeros(batch, length, heads, headdim, dtype=x.dtype, device=dev)
        dh0 = _alloc.empty(batch, heads, headdim, nstate, **f32) if h0 is not None else None
        seg_dend = _alloc.empty(batch * heads, n_seg, headdim, nstate, **f32) if n_seg > 1 else dA
        seg_sum = _alloc.empty(batch * heads, n_seg, **f32) if n_seg > 1 else dA
        dlast = dlast.float().contiguous() if dlast is not None else None
        opt = lambda t: t if t is not None else dA
        zs = z.stride() if z is not None else (0, 0, 0, 0)
        args = (
            x, dt, A, B, C, opt(D), opt(z), opt(dt_bias), dout, opt(dlast), states, seg_dend, seg_sum,
            dx, ddt, dA, dBg, dCg, opt(dD), opt(dz), opt(dbias), opt(dh0),
            length, heads, heads // groups, headdim, nstate, n_chunks, seg_chunks, n_seg,
            *x.stride(), *dt.stride(), *B.stride(), *C.stride(), *zs, *dout.stride(),
        )
        flags = dict(
            HAS_D=D is not None, D_PER_CHANNEL=D is not None and D.dim() == 2, HAS_Z=z is not None,
            HAS_BIAS=dt_bias is not None, SOFTPLUS=softplus, HAS_H0=h0 is not None, HAS_DLAST=dlast is not None,
            CARRY=n_seg > 1, CHUNK=chunk, BLOCK_P=bbp, BLOCK_N=bn, PRECISION=_precision(x.dtype), num_warps=warps,
            SPLIT_P=n_pblk > 1,
        )
        grid = (batch * heads, n_seg, n_pblk)
        if n_seg > 1:
            ssd_causal_bwd_kernel[grid](*args, MODE=1, **flags, **_stages()[1])
            segment_carry(seg_sum, seg_dend, dlast, reverse=True)
        ssd_causal_bwd_kernel[grid](*args, MODE=0, **flags, **_stages()[1])
        return (
            dx, ddt.to(dt.dtype), dA.to(A.dtype), dBg.to(B.dtype), dCg.to(C.dtype),
            dD.to(D.dtype) if D is not None else None, dz,
            dbias.to(dt_bias.dtype) if dt_bias is not None else None,
            dh0.to(h0.dtype) if h0 is not None else None, None, None, None,
        )


def ssd_causal_triton(
    x, dt, A, B, C, chunk_size=64, D=None, z=None, dt_bias=None, dt_softplus=False, initial_state=None,
    return_last_state=False,
):
    """Same contract as :func:`visionssm.ops.ssd.ssd_causal`; float32 state math, outputs in x's dtype.

    B and C are cast to x's dtype (the tensor-core operands must share one dtype)."""
    if B.dtype != x.dtype:
        B = B.to(x.dtype)
    if C.dtype != x.dtype:
        C = C.to(x.dtype)
    if z is not None and z.dtype != x.dtype:
        z = z.to(x.dtype)
    f32 = lambda t: t.float().contiguous() if t is not None else None
    init = f32(initial_state)
    # Inside Function.forward grad mode is off, so whether to save chunk states for backward is decided here.
    tensors = (x, dt, A, B, C, D, z, dt_bias, initial_state)
    save = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    y, last = _autograd.apply(_TritonSSDCausal, x, dt, f32(A), B, C, f32(D), z, f32(dt_bias), init, dt_softplus,
                              chunk_size, save)
    return (y, last) if return_last_state else y
