"""Autograd wrapper and launch configuration of the Triton selective scan."""

from __future__ import annotations

import os

import torch

from .. import _alloc, _autograd
from .._host import cached_on_env, cdiv, env_get, next_pow2, strides
from .._launch import launch
from .._segment_carry import segment_carry
from .reference import grouped_bc
from .triton_bc_layout import pack_bc, unpack_bc_grads
from .triton_bwd import selective_scan_bwd_kernel
from .triton_fwd import selective_scan_fwd_kernel
from .triton_prep import backward_prep
from .triton_smalln import SmallNScan, use_smalln
from .triton_tiled import TiledScan, use_tiled

# Below this many (batch x channel-block) programs, rows are cut into time segments (for 4x as many programs).
# 512: at (32, 768, 197, 16), 768 programs, segments cost more than the idle SM slots they fill (H100, Triton
# 3.6: forward kernel 0.141 vs 0.085 ms, backward 0.644 vs 0.453 ms, and two launches more each way).
_MIN_PROGRAMS = 512
# Up to this many forward segments the output pass folds the earlier ones in itself: no segment_carry launch
# (~50 us of host time on the H100 machine, benchmarks/host_breakdown.py) for a few cached loads per program.
FOLD_MAX_SEGMENTS = 16
# Steps between the states the forward saves, and the backward's unrolled chunk (its states held in registers).
DEFAULT_CHUNK = 4


@cached_on_env("VISIONSSM_SCAN_T")
def tile_tokens() -> int:
    """Forward steps per unrolled chunk, also the width of its (channels, tokens) I/O tiles: 8 (a power of
    two). ``VISIONSSM_SCAN_T`` overrides (sweeps)."""
    t = int(os.environ.get("VISIONSSM_SCAN_T", 8))
    if t < 2 or t & (t - 1):
        raise ValueError(f"VISIONSSM_SCAN_T={t}: must be a power of two >= 2")
    return t


@cached_on_env("VISIONSSM_SCAN_STAGES")
def pipeline_stages() -> int:
    """Software-pipelining depth of the forward's chunk loop (2: B/C rows of the next chunk are copied to
    shared memory while this one runs; 1: off). ``VISIONSSM_SCAN_STAGES`` overrides (sweeps)."""
    return int(os.environ.get("VISIONSSM_SCAN_STAGES", 2))


@cached_on_env("VISIONSSM_SCAN_CFG", "VISIONSSM_SCAN_PROGRAMS", "VISIONSSM_SCAN_T")
def launch_config(batch: int, dim: int, dim_per_group: int, nstate: int, length: int):
    """(BLOCK_D, BLOCK_N, CHUNK, num_warps, seg_len, n_seg). ``VISIONSSM_SCAN_CFG=bd,chunk,warps`` overrides."""
    bd, chunk, warps = 32, DEFAULT_CHUNK, 1  # one channel per thread (see triton_fwd.py); VISIONSSM_SCAN_CFG sweeps it
    if os.environ.get("VISIONSSM_SCAN_CFG"):
        bd, chunk, warps = (int(v) for v in os.environ["VISIONSSM_SCAN_CFG"].split(","))
    if chunk < 2 or chunk & (chunk - 1):
        raise ValueError(f"VISIONSSM_SCAN_CFG: chunk={chunk} must be a power of two >= 2")
    while dim_per_group % bd:
        bd //= 2
    bn = next_pow2(nstate)
    programs = batch * (dim // bd)
    least = int(os.environ.get("VISIONSSM_SCAN_PROGRAMS", _MIN_PROGRAMS))
    # Cut time into segments only when channels alone leave the GPU far short of programs, and then cut deep
    # (4 x least): segments cost a second pass, so a grid of ViT sizes is better left whole.
    n_seg = 1 if programs >= least else max(1, min(cdiv(4 * least, programs), cdiv(length, 4 * chunk)))
    step = max(chunk, tile_tokens())  # segments start at a chunk of either kernel
    seg_len = cdiv(cdiv(length, n_seg), step) * step
    n_seg = cdiv(length, seg_len)
    return bd, bn, chunk, warps, seg_len, n_seg


@cached_on_env("VISIONSSM_SCAN_MAXNREG")
def register_cap() -> dict:
    """``VISIONSSM_SCAN_MAXNREG=n``: cap registers per thread (for sweeps). At N = 16 the forward takes 253 and
    the backward 255 (sm_90, Triton 3.6: 8 one-warp programs per SM). Caps measured slower on the H100 at
    (128, 384, 197, 16) on an earlier backward (0.977 ms at 168, 1.211 ms at 128, 0.942 ms uncapped). Unset: no cap."""
    cap = os.environ.get("VISIONSSM_SCAN_MAXNREG")
    return {"maxnreg": int(cap)} if cap else {}


def use_warp_reduce(u: torch.Tensor, block_d: int, block_n: int, nstate: int, warps: int) -> bool:
    """The backward's dB/dC sums by warp reduce-scatter (PTX, ops/_warp_reduce.py): CUDA tensors outside the
    interpreter, one warp of 32 channels, N = 16. ``VISIONSSM_SCAN_WARP_REDUCE=0`` turns it off."""
    return (use_asm(u) and block_d == 32 and warps == 1 and block_n == nstate == 16
            and env_get("VISIONSSM_SCAN_WARP_REDUCE", "1") != "0")


def use_asm(u: torch.Tensor) -> bool:
    """Inline PTX (lg2.approx in softplus, ops/_fastmath.py; the warp reduce): CUDA tensors outside the interpreter."""
    return u.is_cuda and env_get("TRITON_INTERPRET", "0") != "1"


@cached_on_env("VISIONSSM_SCAN_T", "VISIONSSM_SCAN_STAGES", "VISIONSSM_SCAN_MAXNREG", "VISIONSSM_SCAN_M1_AHEAD")
def _fwd_flags(has_d, has_z, has_bias, softplus, reverse, save, chunk, bd, bn, even_n, bidir, n_seg, fold, asm, warps):
    """The forward kernel's constexprs and launch options (cached: a dict of ~25 entries per call adds up)."""
    return dict(
        HAS_D=has_d, HAS_Z=has_z, HAS_BIAS=has_bias, SOFTPLUS=softplus, REVERSE=reverse, SAVE_STARTS=save,
        CHUNK=chunk, BLOCK_D=bd, BLOCK_N=bn, EVEN_N=even_n, T=tile_tokens(), LOG_T=tile_tokens().bit_length() - 1,
        STAGES=pipeline_stages(), M1_AHEAD=env_get("VISIONSSM_SCAN_M1_AHEAD", "1") == "1", BIDIR=bidir,
        CARRY=n_seg > 1, FOLD=fold, ASM=asm,
        num_warps=warps, **register_cap(),
    )


@cached_on_env("VISIONSSM_SCAN_MAXNREG", "VISIONSSM_SCAN_M1_AHEAD")
def _bwd_flags(has_d, has_z, has_bias, softplus, reverse, has_dlast, chunk, bd, bn, even_n, bidir, n_seg, warp_reduce,
               asm, warps):
    """The backward kernel's constexprs and launch options (cached, as _fwd_flags)."""
    return dict(
        HAS_D=has_d, HAS_Z=has_z, HAS_BIAS=has_bias, SOFTPLUS=softplus, REVERSE=reverse, HAS_DLAST=has_dlast,
        CHUNK=chunk, LOG_C=chunk.bit_length() - 1, BLOCK_D=bd, BLOCK_N=bn, EVEN_N=even_n, BIDIR=bidir,
        CARRY=n_seg > 1, WARP_REDUCE=warp_reduce, ASM=asm, M1_AHEAD=env_get("VISIONSSM_SCAN_M1_AHEAD", "1") == "1",
        num_warps=warps, **register_cap(),
    )


class _TritonScan(torch.autograd.Function):
    """One direction; or with u2/delta2/B2/C2/A2/D2/bias2 (BIDIR) Vision Mamba's two directions in one launch:
    the second scanned right to left, each with its own parameters (no stacked copies: no cat ops, and no
    autograd nodes to split their grads), output stacked (batch, 2 dim, L), z shared."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus, reverse, u2=None, delta2=None, B2=None, C2=None,
                A2=None, D2=None, bias2=None):
        bidir = u2 is not None
        # B, C may come (batch, N, L) or (batch, G, N, L); their grads go back in the shapes and dtypes that came.
        ctx.bc_shapes = (B.shape, C.shape, *((B2.shape, C2.shape) if bidir else ()))
        ctx.bc_dtypes = (B.dtype, C.dtype, *((B2.dtype, C2.dtype) if bidir else ()))
        # B, C (and B2, C2) arrive (batch, [G,] N, L) in any dtype and layout; the kernels read N-vectors (float32,
        # or 16-bit in a no-grad forward): (batch, G, L, N) views here. Converted here rather than by the caller:
        # outside, each conversion is a few autograd nodes whose backward costs host time on every training step
        # (the grads are cast back below).
        save = any(ctx.needs_input_grad)
        # A saving forward also readies the backward's accumulators in the launch that packs B/C (when it runs)
        n_dir = 1 + bidir
        zero_sizes = (_acc_sizes(u.shape, n_dir * A.shape[0], A.shape[1], (B.shape[1] if B.dim() == 4 else 1) * n_dir)
                      if save else None)
        (B, C, *bc2), ctx.prep = _scan_layout((B, C, B2, C2) if bidir else (B, C), not save, A, A2, zero_sizes)
        if bidir:
            B2, C2 = bc2
        batch, dim, length = u.shape
        groups, nstate = B.shape[1], A.shape[1]
        dpg = dim // groups
        dim = 2 * dim if bidir else dim  # channels the launch covers: [forward | backward] with BIDIR
        bd, bn, chunk, warps, seg_len, n_seg = launch_config(batch, dim, dpg, nstate, length)
        dev = u.device
        f32 = dict(dtype=torch.float32, device=dev)
        # u's layout ((batch, L, dim) storage stays token-major); stacked directions are channel-major.
        out = _alloc.empty(batch, dim, length, dtype=u.dtype, device=dev) if bidir else _alloc.empty_like(u)
        # (batch, dim, N) stored as (N, dim) planes, like the state tiles (no transposing op to return it)
        last = _alloc.empty_strided((batch, dim, nstate), (nstate * dim, 1, dim), **f32)
        starts = _alloc.empty(batch, cdiv(length, chunk), dim // bd, bn, bd, **f32) if save else last
        seg_end = _alloc.empty(batch, n_seg, nstate, dim, **f32) if n_seg > 1 else last
        seg_sum = _alloc.empty(batch, n_seg, dim, **f32) if n_seg > 1 else last
        # A (dim, N) float32 goes to the kernel as is (it scales it by log2 e itself). Before segment_carry, the
        # segment pass also writes its coefficients At = A^T log2(e) (N, dim): no torch op for them on the host.
        fold = 1 < n_seg <= FOLD_MAX_SEGMENTS
        need_at = n_seg > 1 and not fold
        At = _alloc.empty(nstate, dim, **f32) if need_at else last
        opt = lambda t: t if t is not None else out
        second = ((u2, delta2, B2, C2, A2, opt(D2), opt(bias2)) if bidir
                  else (u, delta, B, C, A, opt(D), opt(delta_bias)))
        tensors = (u, delta, A, At, B, C, opt(D), opt(z), opt(delta_bias), out, last, starts, seg_end, seg_sum, *second)
        scalars = (
            length, dim, dpg, nstate, seg_len, n_seg,
            *u.stride(), *delta.stride(), *strides(z), *out.stride(), *_bgnl(B), *_bgnl(C), 0,
        )
        flags = _fwd_flags(D is not None, z is not None, delta_bias is not None, softplus, reverse, save, chunk, bd, bn,
                           bn == nstate, bidir, n_seg, fold, use_asm(u), warps)
        grid = (batch, dim // bd, n_seg)
        if n_seg > 1:
            launch(selective_scan_fwd_kernel, grid, tensors, scalars, flags, MODE=1, WRITE_AT=need_at)
            if not fold:
                segment_carry(seg_sum, seg_end, None, reverse=False, coef=At)
        launch(selective_scan_fwd_kernel, grid, tensors, scalars, flags, MODE=0)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, starts, seg_sum,
                              *((u2, delta2, B2, C2, A2, D2, bias2) if bidir else ()))
        ctx.cfg = (softplus, reverse, bd, bn, chunk, warps, seg_len, n_seg, bidir)
        ctx.set_materialize_grads(False)  # an unused last state costs no zero-filled grad (host time, a launch)
        return out, last

    @staticmethod
    def backward(ctx, dout, dlast):
        softplus, reverse, bd, bn, chunk, warps, seg_len, n_seg, bidir = ctx.cfg
        u, delta, A, B, C, D, z, delta_bias, starts, seg_sum, *second = ctx.saved_tensors
        A2, D2, bias2 = second[4:] if bidir else (None, None, None)
        batch, _, length = u.shape
        half, nstate = A.shape
        dim = 2 * half if bidir else half
        groups = B.shape[1]
        dpg = u.shape[1] // groups
        dev = u.device
        f32 = dict(dtype=torch.float32, device=dev)
        n_blk = dim // bd
        if dout is None:  # only the last state was used
            dout = torch.zeros(batch, dim, length, dtype=u.dtype, device=dev)
        # du, ddelta (, dz): one allocation (u, delta and z share a dtype: the callers cast them to u's)
        du, ddelta, *dz = _alloc.empty(2 + (z is not None), batch, dim, length, dtype=u.dtype, device=dev).unbind(0)
        dz = dz[0] if dz else None
        # The atomic accumulators, zeroed by the forward's pack launch or else by a prep launch, which also write
        # At = A^T log2(e) (the kernel's (N, dim) decay planes): flat dA^T, dD, ddelta_bias, [dB | dC] per (batch,
        # group of either direction, token), At.
        prep, ctx.prep = ctx.prep, None  # used once: a second backward (retain_graph) needs fresh zeros
        if prep is None:
            prep = backward_prep(A, _acc_sizes(u.shape, dim, nstate, dim // dpg), A2)
        dAt, dD, dbias, dBC, At = prep
        dD = dD if D is not None else None
        dbias = dbias if delta_bias is not None else None
        seg_w = _alloc.empty(batch, n_seg, nstate, dim, **f32) if n_seg > 1 else dAt
        dA = dAt.as_strided((half, nstate), (1, dim))  # the grad of A (dim, N): a view of the (N, dim) planes
        if dlast is not None:  # segment_carry takes (batch, dim, N); the kernel's own load wants (batch, N, dim)
            dlast = dlast.float().contiguous() if n_seg > 1 else dlast.transpose(1, 2).float().contiguous()
        dout = dout.contiguous() if bidir else dout
        opt = lambda t: t if t is not None else du
        second = (*second[:4], opt(D2), opt(bias2)) if bidir else (u, delta, B, C, opt(D), opt(delta_bias))
        tensors = (u, delta, At, B, C, opt(D), opt(z), opt(delta_bias), dout, opt(dlast), starts, seg_w, seg_sum,
                   du, ddelta, dAt, dBC, opt(dD), opt(dz), opt(dbias), *second)
        scalars = (
            length, dim, dpg, nstate, seg_len, n_seg,
            *u.stride(), *delta.stride(), *strides(z), *dout.stride(), *_bgnl(B), *_bgnl(C), 0,
        )
        flags = _bwd_flags(D is not None, z is not None, delta_bias is not None, softplus, reverse, dlast is not None,
                           chunk, bd, bn, bn == nstate, bidir, n_seg, use_warp_reduce(u, bd, bn, nstate, warps),
                           use_asm(u), warps)
        grid = (batch, n_blk, n_seg)
        if n_seg > 1:
            launch(selective_scan_bwd_kernel, grid, tensors, scalars, flags, MODE=1)
            segment_carry(seg_sum, seg_w, dlast, reverse=True, coef=At, init_transposed=True)
        launch(selective_scan_bwd_kernel, grid, tensors, scalars, flags, MODE=0)
        n_dir = 2 if bidir else 1
        grads = _bc_grads(dBC, ctx.bc_dtypes, ctx.bc_shapes, batch, n_dir, groups, length, nstate)
        if not bidir:
            return du, ddelta, dA, *grads, _cast(dD, D), dz, _cast(dbias, delta_bias), None, None
        # each direction's parameter grads: views of the (2 dim) accumulators
        dA2 = dAt.as_strided((half, nstate), (1, dim), dAt.storage_offset() + half)
        dD, dD2 = dD.split(half) if dD is not None else (None, None)
        dbias, dbias2 = dbias.split(half) if dbias is not None else (None, None)
        if dz is not None:
            dz = dz[:, :half] + dz[:, half:]
        return (du[:, :half], ddelta[:, :half], dA, grads[0], grads[1], _cast(dD, D), dz, _cast(dbias, delta_bias),
                None, None, du[:, half:], ddelta[:, half:], grads[2], grads[3], dA2, _cast(dD2, D2),
                _cast(dbias2, bias2))


def _cast(grad, like):
    """A float32 parameter grad in its parameter's dtype (None stays None)."""
    return grad.to(like.dtype) if grad is not None and like.dtype != torch.float32 else grad


def _bc_grads(dBC, dtypes, shapes, batch, n_dir, groups, length, nstate):
    """dB, dC (and dB2, dC2) from the [dB | dC] float32 rows (batch, n_dir x groups, L, 2N), each contiguous in
    the shape and dtype its input came in: one launch for all when the shapes and dtypes agree."""
    if len(set(dtypes)) == 1 and len(set(shapes)) == 1 and batch * groups <= _MAX_GRID_Y:
        return unpack_bc_grads(dBC, shapes[0], dtypes[0], n_dir, groups)
    # (n_dir, 2, batch, G, N, L): rows in the order of the inputs, dB, dC (, dB2, dC2). A .to to the same dtype
    # returns its input whatever the memory format asked: .contiguous() then makes the copy.
    rows = dBC.view(batch, n_dir, groups, length, 2, nstate).permute(1, 4, 0, 2, 5, 3)
    cast = lambda t, dtype: t.to(dtype, memory_format=torch.contiguous_format) if dtype != t.dtype else t.contiguous()
    grads = [cast(rows[j, k], dtypes[2 * j + k]) for j in range(n_dir) for k in range(2)]
    return [g.view(shape) for g, shape in zip(grads, shapes)]


def _scan_layout(tensors: tuple, allow_half: bool, A: torch.Tensor, A2, zero_sizes: tuple | None) -> tuple:
    """(B, C (, B2, C2), prep): the (batch, [G,] N, L) inputs as the (batch, G, L, N) views (N contiguous, equal
    strides) the kernels read: as they are when they already are, else converted by one launch for all. B and C
    are ~N/dim of the traffic, so the copy is cheap; its host time is what counts. With ``zero_sizes``, that launch
    also does backward_prep(A, zero_sizes, A2), returned as ``prep`` (None when there was no launch).

    ``allow_half`` (no backward to follow): 16-bit B/C stay 16-bit, which the forward reads faster (H100,
    (128, 384, 197, 16): 0.115 vs 0.127 ms); the backward reads float32 faster (0.526 vs 0.727 ms), so a
    forward that saves for it converts them to float32. ``VISIONSSM_SCAN_BC16=0``: always float32."""
    t0 = tensors[0]
    half = allow_half and t0.dtype in _HALF and env_get("VISIONSSM_SCAN_BC16", "1") != "0"
    dtype = t0.dtype if half else torch.float32
    if all(t.dtype == dtype and t.stride(-2) == 1 for t in tensors):
        views = [_bgln_view(t) for t in tensors]
        if len({v.stride() for v in views}) > 1:  # one set of strides serves all
            views = [v.contiguous() for v in views]
        return views, None
    if (len({t.dtype for t in tensors}) == 1 and len({t.shape for t in tensors}) == 1
            and t0.shape[0] * (t0.shape[1] if t0.dim() == 4 else 1) <= _MAX_GRID_Y):
        out = pack_bc(tensors, dtype, (A, A2, zero_sizes) if zero_sizes is not None else None)
        k = len(tensors)
        return out[:k], (out[k:] if zero_sizes is not None else None)
    return [_bgln_view(t).to(torch.float32).contiguous() for t in tensors], None  # (mixed dtypes or shapes: rare)


def _bgln_view(t: torch.Tensor) -> torch.Tensor:
    """A (batch, [G,] N, L) tensor as a (batch, G, L, N) view."""
    return (t if t.dim() == 4 else t.unsqueeze(1)).transpose(-1, -2)


def _acc_sizes(u_shape, dim: int, nstate: int, n_grp: int) -> tuple:
    """Sizes of the backward's zeroed accumulators: dA^T, dD, ddelta_bias (dim: both directions with BIDIR),
    [dB | dC] (batch, n_grp, L, 2N)."""
    return nstate * dim, dim, dim, u_shape[0] * n_grp * u_shape[2] * 2 * nstate


_HALF = (torch.bfloat16, torch.float16)
_MAX_GRID_Y = 65535  # the layout kernels put (batch x groups) on grid axis 1, which CUDA caps here


def _bgnl(t: torch.Tensor) -> tuple:
    """Strides of a (batch, G, L, N) view in the kernels' (batch, G, N, L) argument order."""
    s = t.stride()
    return s[0], s[1], s[3], s[2]


def _f32(t):
    """Parameters as contiguous float32 (no call when they already are: this runs on every op call)."""
    if t is None or (t.dtype == torch.float32 and t.is_contiguous()):
        return t
    return t.float().contiguous()


def selective_scan_triton(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, reverse=False,
    return_last_state=False,
):
    """Same contract as :func:`visionssm.ops.selective_scan`; float32 state math, outputs in u's dtype."""
    smalln = use_smalln(A.shape[1])  # time-parallel kernel for N <= 4 (triton_smalln.py)
    if B.dim() != 3 or C.dim() != 3:  # (3-D: _TritonScan adds the group axis itself)
        B, C = grouped_bc(B, C, u.shape[1])
    tiled = not smalln and use_tiled(u.shape[1] // (1 if B.dim() == 3 else B.shape[1]))  # opt-in: time-parallel
    if (smalln or tiled) and B.dim() == 3:
        B, C = grouped_bc(B, C, u.shape[1])
    if delta.dtype != u.dtype:
        delta = delta.to(u.dtype)
    if z is not None and z.dtype != u.dtype:
        z = z.to(u.dtype)
    args = (u, delta, _f32(A), B, C, _f32(D), z, _f32(delta_bias), delta_softplus, reverse)
    if tiled:
        out, last = _autograd.apply(TiledScan, *args, return_last_state)
    else:
        out, last = _autograd.apply(SmallNScan if smalln else _TritonScan, *args)
    return (out, last) if return_last_state else out


def bidirectional_selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                                        return_last_state=False):
    """Same contract as :func:`visionssm.ops.selective_scan.bidirectional_selective_scan` (per-direction
    tuples in, (batch, 2, dim, L) out): one launch for N > 4; N <= 4 runs the small-N kernel once per direction."""
    if use_smalln(A[0].shape[1]):
        outs = [selective_scan_triton(u[k], delta[k], A[k], B[k], C[k], D[k] if D is not None else None, z,
                                      delta_bias[k] if delta_bias is not None else None, delta_softplus,
                                      reverse=k == 1, return_last_state=True) for k in range(2)]
        out, last = torch.stack([o[0] for o in outs], 1), torch.stack([o[1] for o in outs], 1)
        return (out, last) if return_last_state else out
    dim = u[0].shape[1]
    if all(t.dim() == 3 for t in (*B, *C)):  # converted, and the group axis added, in _TritonScan.forward
        (Bf, Bb), (Cf, Cb) = B, C
    else:
        (Bf, Cf), (Bb, Cb) = (grouped_bc(B[k], C[k], dim) for k in range(2))
    dtype = u[0].dtype
    uf, ub = (t.to(dtype) for t in u)
    df, db = (t.to(dtype) for t in delta)
    if uf.stride() != ub.stride():
        uf, ub = uf.contiguous(), ub.contiguous()
    if df.stride() != db.stride():
        df, db = df.contiguous(), db.contiguous()
    if z is not None and z.dtype != dtype:
        z = z.to(dtype)
    pick = lambda pair, k: _f32(pair[k]) if pair is not None else None
    out, last = _autograd.apply(_TritonScan, uf, df, pick(A, 0), Bf, Cf, pick(D, 0), z, pick(delta_bias, 0),
                                delta_softplus, False, ub, db, Bb, Cb, pick(A, 1), pick(D, 1), pick(delta_bias, 1))
    batch, _, length = uf.shape
    out, last = out.view(batch, 2, dim, length), last.view(batch, 2, dim, -1)
    return (out, last) if return_last_state else out
