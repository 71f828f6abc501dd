"""Triton causal SSD vs the float64 reference: outputs and every gradient, NaN-poisoned outputs.

On CPU the kernels run in the Triton interpreter (slow): shapes stay tiny. ``gpu`` tests use real vision sizes.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from visionssm.ops import _alloc
from visionssm.ops.ssd import hsm_ssd, ssd_causal, ssd_noncausal, triton_causal
from visionssm.ops.ssd.triton_causal import launch_config

from .scan_cases import rel_err, run_with_grads
from .ssd_cases import hsm_inputs, ssd_inputs


def compare_triton(inputs, device, tol=2e-5, dtype=torch.float32, ref_backend="reference", yardstick=False,
                   op=ssd_causal, **kw):
    """``yardstick``: allow 20x the error of our float32 torch path on the same inputs, for random tiny shapes where a
    gradient can be a sum of few cancelling terms (its float32 rounding then has no fixed relative size)."""
    ref_out, ref_g = run_with_grads(lambda **a: op(**a, backend=ref_backend, **kw), inputs, lambda t: t.to(device))
    with _alloc.poisoned_outputs():
        out, g = run_with_grads(lambda **a: op(**a, backend="triton", **kw), inputs, lambda t: t.to(device, dtype))
    if yardstick:
        _, g32 = run_with_grads(lambda **a: op(**a, backend="torch", **kw), inputs, lambda t: t.to(device, dtype))
    for o, r in zip(out, ref_out):
        assert o.dtype == dtype
        assert rel_err(o, r) <= tol
    for name, r in ref_g.items():
        assert g[name].dtype == dtype, name
        allowed = max(tol, 20 * rel_err(g32[name], r)) if yardstick else tol
        assert rel_err(g[name], r) <= allowed, name


@settings(max_examples=8, deadline=None)
@given(
    batch=st.integers(1, 2),
    length=st.one_of(st.just(1), st.integers(1, 40)),
    heads_per_group=st.integers(1, 2),
    groups=st.sampled_from([1, 2]),
    headdim=st.integers(1, 20),
    nstate=st.sampled_from([1, 5, 16, 17]),
    chunk=st.sampled_from([16, 32]),
    use_z=st.booleans(),
    use_state=st.booleans(),
    d_per_channel=st.booleans(),
)
def test_triton_matches_reference(batch, length, heads_per_group, groups, headdim, nstate, chunk, use_z, use_state,
                                  d_per_channel):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x = ssd_inputs(batch, length, heads_per_group * groups, headdim, nstate, groups, with_z=use_z,
                   with_state=use_state, d_per_channel=d_per_channel)
    compare_triton(x, device, yardstick=True, chunk_size=chunk, dt_softplus=True, return_last_state=True)


def test_triton_without_optional_inputs(triton_device):
    x = ssd_inputs(2, 21, 2, 3, 4, with_z=False, with_state=False, seed=31)
    x["D"], x["dt_bias"] = None, None
    x["dt"] = torch.nn.functional.softplus(x["dt"])
    compare_triton(x, triton_device, chunk_size=16)


def test_triton_segments(triton_device, monkeypatch):
    # 10 chunks over few (batch, head) rows: the two-pass segment path with 3 segments.
    monkeypatch.setenv("VISIONSSM_SSD_CFG", "16,4,8,64")
    assert launch_config(1, 2, 150, 16)[3] == 3
    x = ssd_inputs(1, 150, 2, 3, 4, seed=32)
    compare_triton(x, triton_device, chunk_size=16, dt_softplus=True, return_last_state=True)


@pytest.mark.parametrize("length,with_state,cfg", [(600, True, "16,4,8,256"), (330, False, "16,4,8,256"),
                                                   (600, True, "16,4,8,8,256")])
@pytest.mark.parametrize("fold", [False, True])
def test_triton_many_segments(length, with_state, cfg, fold, triton_device, monkeypatch):
    # Up to 10 segments: the carries entering each come from one scan over the segments (segment_carry),
    # forward (initial state folded in) and backward (last-state grad folded in); the last case cuts the
    # backward into more segments than the forward. fold: the forward's output pass folds them in itself.
    monkeypatch.setenv("VISIONSSM_SSD_CFG", cfg)
    monkeypatch.setattr(triton_causal, "FOLD_MAX_SEGMENTS", 64 if fold else 0)
    n_chunks = math.ceil(length / 16)
    fwd_seg = launch_config(1, 2, length, 16)[3]
    bwd_seg = launch_config(1, 2, length, 16, backward=True)[3]
    assert bwd_seg == math.ceil(n_chunks / 4) > 5 and (fwd_seg == bwd_seg) == (cfg.count(",") == 3)
    x = ssd_inputs(1, length, 2, 3, 4, seed=34, with_state=with_state)
    compare_triton(x, triton_device, chunk_size=16, dt_softplus=True, return_last_state=True)


@pytest.mark.parametrize("length,cfg", [(150, "32,4,4,2"), (300, "64,4,4,16")])
def test_triton_inference_chunk64(length, cfg, triton_device, monkeypatch):
    # Without grad the forward saves no states for a backward, so rows that need no segments run 64-token
    # chunks (target 2 makes 2 rows enough here); the second case forces 64 with 3 segments (segment_carry).
    # Outputs and last state vs the float64 reference.
    monkeypatch.setenv("VISIONSSM_SSD_CFG", cfg)
    chunk, _, _, n_seg, _, _ = launch_config(1, 2, length, 64, 3, 4, inference=True)
    forced = cfg.startswith("64")
    assert chunk == 64 and launch_config(1, 2, length, 64, 3, 4)[0] == (64 if forced else 32)
    assert (n_seg > 1) == forced
    x = ssd_inputs(1, length, 2, 3, 4, seed=35)
    kw = dict(chunk_size=64, dt_softplus=True, return_last_state=True, D=x["D"], z=x["z"], dt_bias=x["dt_bias"],
              initial_state=x["initial_state"])
    core = [x[k] for k in ("x", "dt", "A", "B", "C")]
    ref = ssd_causal(*core, **kw, backend="reference")
    dev = lambda t: t.to(triton_device, torch.float32) if t is not None else None
    with torch.no_grad(), _alloc.poisoned_outputs():
        out = ssd_causal(*map(dev, core), **{k: dev(v) if torch.is_tensor(v) else v for k, v in kw.items()},
                         backend="triton")
    for o, r in zip(out, ref):
        assert rel_err(o, r) <= 2e-5


@pytest.mark.parametrize("blockp,groups,cfg", [("16,16", 1, None), ("16,16", 2, "16,4,4,64"), ("32,16", 1, None)])
def test_triton_headdim_blocks(blockp, groups, cfg, triton_device, monkeypatch):
    # Programs own headdim blocks: the backward adds the blocks' shares of d(dt), dB, dC (and dA, d(dt_bias))
    # atomically; with cfg also segments, forward and backward.
    monkeypatch.setenv("VISIONSSM_SSD_BLOCKP", blockp)
    if cfg:
        monkeypatch.setenv("VISIONSSM_SSD_CFG", cfg)
    x = ssd_inputs(1, 70, 2 * groups, 40, 5, groups, seed=36, d_per_channel=groups == 2)
    compare_triton(x, triton_device, chunk_size=16, dt_softplus=True, return_last_state=True)


def test_triton_strided_inputs(triton_device):
    # x, z, B, C, dt as views into one projection (the layout a Mamba-2 mixer produces), and a strided dout.
    batch, length, heads, headdim, nstate = 2, 19, 2, 4, 3
    g = torch.Generator().manual_seed(33)
    proj = torch.randn(batch, length, 2 * heads * headdim + 2 * nstate + heads, generator=g, dtype=torch.float64)
    A = -torch.rand(heads, generator=g, dtype=torch.float64) - 0.5
    D = torch.randn(heads, generator=g, dtype=torch.float64)
    cot = torch.randn(batch, heads, length, headdim, generator=g, dtype=torch.float64).transpose(1, 2)

    def run(proj, backend):
        z, x, B, C, dt = torch.split(proj, [heads * headdim, heads * headdim, nstate, nstate, heads], dim=-1)
        y = ssd_causal(x.unflatten(-1, (heads, headdim)), dt, A.to(proj), B[:, :, None], C[:, :, None], D=D.to(proj),
                       z=z.unflatten(-1, (heads, headdim)), dt_softplus=True, chunk_size=16, backend=backend)
        (grad,) = torch.autograd.grad((y * cot.to(y)).sum(), [proj])
        return y, grad

    y_ref, g_ref = run(proj.clone().requires_grad_(True), "reference")
    with _alloc.poisoned_outputs():
        y, grad = run(proj.to(triton_device, torch.float32).requires_grad_(True), "triton")
    assert rel_err(y, y_ref) < 2e-5
    assert rel_err(grad, g_ref) < 2e-5


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(64, 197, 12, 64, 64), (2, 1000, 4, 64, 64)])
def test_triton_real_sizes_fp32(shape):
    batch, length, heads, headdim, nstate = shape
    x = ssd_inputs(batch, length, heads, headdim, nstate, seed=34, dtype=torch.float32)
    x = {k: v.double() for k, v in x.items()}
    compare_triton(x, torch.device("cuda"), tol=1e-4, chunk_size=64, dt_softplus=True, return_last_state=True)


@pytest.mark.gpu
def test_triton_long_sequence_vs_chunked():
    x = ssd_inputs(8, 6085, 12, 64, 64, seed=35, dtype=torch.float32)
    compare_triton({k: v.double() for k, v in x.items()}, torch.device("cuda"), tol=1e-4, ref_backend="torch",
                   chunk_size=64, dt_softplus=True, return_last_state=True)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_triton_low_precision(dtype):
    x = ssd_inputs(16, 197, 12, 64, 64, seed=36, dtype=torch.float32)
    kw = dict(chunk_size=64, dt_softplus=True)
    ref_out, ref_g = run_with_grads(lambda **a: ssd_causal(**a, backend="torch", **kw), x,
                                    lambda t: t.cuda().double())
    cast = lambda t: t.cuda().to(dtype) if t.dim() >= 3 else t.cuda()
    out, g = run_with_grads(lambda **a: ssd_causal(**a, backend="triton", **kw), x, cast)
    assert out[0].dtype == dtype
    assert rel_err(out[0], ref_out[0]) < 2e-2
    for name, r in ref_g.items():
        assert rel_err(g[name], r) < 5e-2, name


def compare_noncausal(inputs, device, **kw):
    compare_triton(inputs, device, op=ssd_noncausal, **kw)


@settings(max_examples=8, deadline=None)
@given(
    batch=st.integers(1, 2),
    length=st.one_of(st.just(1), st.integers(1, 150)),
    heads_per_group=st.integers(1, 2),
    groups=st.sampled_from([1, 2]),
    headdim=st.integers(1, 20),
    nstate=st.sampled_from([1, 5, 16, 17]),
    interleaved=st.booleans(),
    use_d=st.sampled_from(["none", "head", "channel"]),
    softplus=st.booleans(),
)
def test_triton_noncausal_matches_reference(batch, length, heads_per_group, groups, headdim, nstate, interleaved,
                                            use_d, softplus):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x = ssd_inputs(batch, length, heads_per_group * groups, headdim, nstate, groups, with_z=False, with_state=False,
                   d_per_channel=use_d == "channel")
    if use_d == "none":
        x["D"] = None
    if not softplus:
        x["dt_bias"] = None
    compare_noncausal(x, device, yardstick=True, dt_softplus=softplus, interleaved=interleaved)


def test_triton_noncausal_split_reduction(triton_device):
    # L = 600 over 2 (batch, head) rows: the state sum is split over 3 programs per row (float32 atomics).
    x = ssd_inputs(1, 600, 2, 3, 4, seed=38, with_z=False, with_state=False)
    compare_noncausal(x, triton_device, dt_softplus=True)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(16, 3136, 2, 64, 64), (64, 196, 8, 64, 64)])
def test_triton_noncausal_real_sizes(shape):
    x = ssd_inputs(*shape, seed=37, dtype=torch.float32, with_z=False, with_state=False)
    compare_noncausal({k: v.double() for k, v in x.items()}, torch.device("cuda"), tol=1e-4, dt_softplus=True)


@pytest.mark.parametrize("op", ["causal", "noncausal"])
def test_triton_half_precision(op, triton_device):
    # float16 on CPU too (the interpreter's bfloat16 tl.dot is broken; bfloat16 runs in the gpu tests).
    x = ssd_inputs(2, 40, 4, 16, 16, groups=2, seed=39, with_z=op == "causal", with_state=op == "causal")
    fn, kw = (ssd_causal, dict(chunk_size=16)) if op == "causal" else (ssd_noncausal, {})
    ref_out, ref_g = run_with_grads(lambda **a: fn(**a, dt_softplus=True, backend="reference", **kw), x, lambda t: t)
    cast = lambda t: t.to(triton_device, torch.float16 if t.dim() >= 3 else torch.float32)
    with _alloc.poisoned_outputs():
        out, g = run_with_grads(lambda **a: fn(**a, dt_softplus=True, backend="triton", **kw), x, cast)
    assert out[0].dtype == torch.float16
    assert rel_err(out[0], ref_out[0]) < 3e-3
    for name, r in ref_g.items():
        assert rel_err(g[name], r) < 3e-3, name


@pytest.mark.gpu
def test_triton_noncausal_bfloat16():
    x = ssd_inputs(32, 784, 4, 64, 64, seed=40, dtype=torch.float32, with_z=False, with_state=False)
    ref_out, ref_g = run_with_grads(lambda **a: ssd_noncausal(**a, dt_softplus=True, backend="reference"), x,
                                    lambda t: t.cuda().double())
    cast = lambda t: t.cuda().to(torch.bfloat16) if t.dim() >= 3 else t.cuda()
    out, g = run_with_grads(lambda **a: ssd_noncausal(**a, dt_softplus=True, backend="triton"), x, cast)
    assert out[0].dtype == torch.bfloat16
    assert rel_err(out[0], ref_out[0]) < 2e-2
    for name, r in ref_g.items():
        assert rel_err(g[name], r) < 5e-2, name


def test_triton_gradient_through_last_state_only(triton_device):
    x = ssd_inputs(1, 20, 2, 3, 4, seed=41)
    grads = {}
    for backend in ("reference", "triton"):
        leaves = {k: v.to(triton_device, torch.float32 if backend == "triton" else torch.float64).requires_grad_(True)
                  for k, v in x.items()}
        _, last = ssd_causal(**leaves, dt_softplus=True, chunk_size=16, return_last_state=True, backend=backend)
        grads[backend] = torch.autograd.grad(last.square().sum(), list(leaves.values()), allow_unused=True)
    for name, g, r in zip(x, grads["triton"], grads["reference"]):
        if r is None:  # z and D do not reach the state
            assert g is None or g.abs().max() == 0, name
        else:
            assert rel_err(g, r) < 2e-5, name


@settings(max_examples=6, deadline=None)
@given(
    batch=st.integers(1, 2),
    dim=st.integers(1, 70),
    length=st.one_of(st.just(1), st.integers(1, 140)),
    nstate=st.sampled_from([1, 9, 16, 25]),
    inner=st.integers(1, 8),
    use_a=st.booleans(),
)
def test_triton_hsm_matches_reference(batch, dim, length, nstate, inner, use_a):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x = hsm_inputs(batch, dim, length, nstate, inner)
    if not use_a:
        x["A"] = None
    ref_out, ref_g = run_with_grads(lambda **a: hsm_ssd(**a, backend="reference"), x, lambda t: t.to(device))
    with _alloc.poisoned_outputs():
        out, g = run_with_grads(lambda **a: hsm_ssd(**a, backend="triton"), x, lambda t: t.to(device, torch.float32))
    out32, g32 = run_with_grads(lambda **a: hsm_ssd(**a, backend="torch"), x, lambda t: t.to(device, torch.float32))
    for o, o32, r in zip(out, out32, ref_out):
        assert o.dtype == torch.float32
        # float32 rounding, bounded by the torch float32 path's on the same draw (a fixed 2e-5 failed at 2.02e-5
        # on batch=1, dim=14, L=1, N=16, inner=1)
        assert rel_err(o, r) <= max(2e-5, 20 * rel_err(o32, r))
    for name, r in ref_g.items():
        if name == "A":  # inert: softmax over L cancels it; both gradients are float32 rounding noise, whose
            # size follows the other gradients' (a fixed 1e-4 failed once at 2e-4 on a hypothesis draw)
            scale = max(float(v.abs().max()) for k, v in ref_g.items() if k != "A")
            assert g[name].abs().max() <= 1e-4 * max(1.0, scale)
        else:
            assert rel_err(g[name], r) <= max(2e-5, 20 * rel_err(g32[name], r)), name


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_hsm_real_sizes(dtype):
    x = hsm_inputs(128, 224, 196, 49, seed=42)
    ref_out, ref_g = run_with_grads(lambda **a: hsm_ssd(**a, backend="reference"), x, lambda t: t.cuda())
    cast = lambda t: t.cuda().to(dtype)
    out, g = run_with_grads(lambda **a: hsm_ssd(**a, backend="triton"), x, cast)
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    for o, r in zip(out, ref_out):
        assert rel_err(o, r) <= tol
    for name, r in ref_g.items():
        if name != "A":
            assert rel_err(g[name], r) <= 2 * tol, name


def test_triton_noncausal_channels_first_views(triton_device):
    # VSSD's layer splits x, B, C out of a channels-first conv output: token stride 1, channel stride H*W.
    batch, hw, heads, headdim, nstate = 2, 23, 2, 3, 4
    g = torch.Generator().manual_seed(43)
    conv = torch.randn(batch, heads * headdim + 2 * nstate, hw, generator=g, dtype=torch.float64)
    dt = torch.randn(batch, hw, heads, generator=g, dtype=torch.float64)
    A, D = torch.rand(heads, generator=g, dtype=torch.float64), torch.randn(heads, generator=g, dtype=torch.float64)
    cot = torch.randn(batch, hw, heads, headdim, generator=g, dtype=torch.float64)

    def run(conv, backend):
        x, B, C = conv.transpose(1, 2).split([heads * headdim, nstate, nstate], dim=-1)
        y = ssd_noncausal(x.unflatten(-1, (heads, headdim)), dt.to(conv), A.to(conv), B[:, :, None], C[:, :, None],
                          D=D.to(conv), dt_softplus=True, backend=backend)
        return y, torch.autograd.grad((y * cot.to(y)).sum(), [conv])[0]

    y_ref, g_ref = run(conv.clone().requires_grad_(True), "reference")
    with _alloc.poisoned_outputs():
        y, grad = run(conv.to(triton_device, torch.float32).requires_grad_(True), "triton")
    assert rel_err(y, y_ref) < 2e-5
    assert rel_err(grad, g_ref) < 2e-5
