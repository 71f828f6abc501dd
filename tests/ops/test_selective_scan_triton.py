"""Triton selective scan vs the float64 reference: outputs and every gradient, poisoned outputs.

On CPU these run under TRITON_INTERPRET=1 on small shapes; the `gpu` tests run real sizes on CUDA.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from visionssm.ops import _alloc
from visionssm.ops.selective_scan import selective_scan

from .scan_cases import make_inputs, rel_err, run_with_grads

LOW = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _check(shape, groups, reverse, last_state, device, dtype=torch.float32, tol=1e-4, ref_backend="reference",
           use_z=True, seed=None, bc3d=False, c_f64=False):
    batch, dim, length, nstate = shape
    x = make_inputs(batch, dim, length, nstate, groups, seed=seed, with_bc_groups_dim=not bc3d)
    if not use_z:
        x["z"] = None
        x["D"] = None
    kw = dict(delta_softplus=True, reverse=reverse, return_last_state=last_state)
    # Low-precision inputs are rounded first, so both sides see the same numbers.
    io = {"u", "delta", "B", "C", "z"}
    x = {k: (v.to(dtype).double() if (k in io and v is not None) else v) for k, v in x.items()}
    def ref_fn(**a):
        # Round y to the kernel's output dtype: then the cotangent reaching the reference's backward is rounded
        # the same way as the one autograd hands our bf16/fp16 output (unrounded, the delta_bias grad -- a sum
        # with cancellation -- once missed 1e-2 on that difference alone).
        res = selective_scan(**a, backend=ref_backend, **kw)
        if isinstance(res, tuple):
            return (res[0].to(dtype), *res[1:])
        return res.to(dtype)

    ref_out, ref_g = run_with_grads(
        ref_fn if dtype != torch.float32 else lambda **a: selective_scan(**a, backend=ref_backend, **kw),
        {k: v.to(device) if v is not None else v for k, v in x.items()}, lambda t: t,
    )
    cast = lambda t: t.to(device=device, dtype=dtype if t.dim() >= 3 else torch.float32)
    # c_f64: C reaches the op as float64, B as float32 (the grads' dtypes differ: one cast each)
    tri = lambda **a: selective_scan(**{**a, "C": a["C"].double()} if c_f64 else a, backend="triton", **kw)
    with _alloc.poisoned_outputs():
        out, g = run_with_grads(tri, x, cast)
    for o, r in zip(out, ref_out):
        assert rel_err(o, r) <= tol
    for name, r in ref_g.items():
        assert g[name].dtype == cast(x[name]).dtype and g[name].shape == r.shape, name
        assert rel_err(g[name], r) <= tol, (name, rel_err(g[name], r))


@pytest.mark.parametrize(
    "shape,groups",
    [((2, 4, 1, 16), 1), ((2, 4, 37, 16), 1), ((1, 8, 70, 16), 2), ((2, 6, 23, 1), 3), ((1, 4, 19, 64), 1),
     ((1, 2, 131, 4), 1)],
)
@pytest.mark.parametrize("reverse", [False, True])
def test_triton_fp32_matches_reference(shape, groups, reverse, triton_device):
    _check(shape, groups, reverse, True, triton_device)


@pytest.mark.parametrize("reverse,fold", [(False, False), (True, False), (False, True), (True, True)])
def test_triton_many_segments(reverse, fold, triton_device, monkeypatch):
    # One row of 4 channels over 600 tokens: >= 10 time segments, whose entering states (and the backward's
    # entering adjoints, the last state's grad included) come from one scan over the segments; or (fold) the
    # forward's output pass folds the earlier segments in itself.
    from visionssm.ops.selective_scan import triton_scan

    monkeypatch.setattr(triton_scan, "FOLD_MAX_SEGMENTS", 64 if fold else 0)
    assert triton_scan.launch_config(1, 4, 4, 16, 600)[5] >= 10
    _check((1, 4, 600, 16), 1, reverse, True, triton_device)


@pytest.mark.parametrize("segments", [False, True])
def test_triton_grads_through_the_last_state_alone(segments, triton_device, monkeypatch):
    # y unused: autograd hands the backward no output grad (grads are not materialised); every input grad
    # then comes from the last state's alone. segments: 600 tokens of one 4-channel row are cut in >= 10.
    shape = (1, 4, 600, 16) if segments else (2, 4, 37, 16)
    x = make_inputs(*shape, 1)
    kw = dict(delta_softplus=True, return_last_state=True)
    grads = {}
    for backend, cast in (("reference", lambda t: t), ("triton", lambda t: t.float().to(triton_device))):
        leaves = {k: cast(v).detach().requires_grad_(True) for k, v in x.items()}
        last = selective_scan(**leaves, backend=backend, **kw)[1]
        cot = torch.randn(last.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        (last.double() * cot.to(last.device)).sum().backward()
        grads[backend] = {k: v.grad for k, v in leaves.items()}
    for k, ref in grads["reference"].items():
        ours = grads["triton"][k]
        if k in ("C", "D", "z"):  # y alone depends on them: no grad, or an all-zero one
            assert ref is None or not ref.any(), k
            assert ours is None or not ours.any(), k
        else:
            assert rel_err(ours, ref) <= 1e-4, k


def test_triton_without_gate_and_skip(triton_device):
    _check((2, 4, 29, 8), 1, False, False, triton_device, use_z=False)


@pytest.mark.parametrize("dtype,c_f64", [(torch.float32, False), (torch.bfloat16, False), (torch.float32, True)])
def test_triton_3d_bc(dtype, c_f64, triton_device):
    # (batch, N, L) B and C: the op adds the group axis itself and returns 3-D grads; with C in another dtype
    # than B their grads are cast one by one instead of in one shared copy.
    _check((2, 4, 21, 16), 1, False, True, triton_device, dtype=dtype, tol=1e-4 if dtype == torch.float32 else 1e-2,
           bc3d=True, c_f64=c_f64)


@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_triton_low_precision_inputs(name, triton_device):
    _check((2, 4, 45, 16), 1, True, False, triton_device, dtype=LOW[name], tol=1e-2)


@pytest.mark.parametrize("packed", [True, False])
def test_triton_second_backward_with_retained_graph(packed, triton_device):
    # The forward's pack launch zeroes the backward's accumulators once; a second backward through the retained
    # graph must start from fresh zeros (its grads accumulate onto the first's: twice the first). packed=False:
    # float32 B/C stored token-major need no packing, and the backward zeroes them itself.
    x = make_inputs(2, 8, 37, 16, 1, dtype=torch.float32, seed=3, with_bc_groups_dim=False)
    if not packed:
        x["B"], x["C"] = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (x["B"], x["C"]))
    leaves = {k: v.to(triton_device).requires_grad_(True) for k, v in x.items()}
    out = selective_scan(**leaves, delta_softplus=True, backend="triton")
    g = torch.randn_like(out)
    out.backward(g, retain_graph=True)
    first = {k: v.grad.clone() for k, v in leaves.items()}
    out.backward(g)
    for k, v in leaves.items():
        torch.testing.assert_close(v.grad, 2 * first[k], rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.parametrize("name", ["bf16", "fp16"])
@pytest.mark.parametrize("layout", ["channel_major", "token_major", "groups"])
@pytest.mark.parametrize("bc16", ["1", "0"])
def test_triton_no_grad_forward_half_bc(name, layout, bc16, triton_device, monkeypatch):
    # Without a backward to follow, 16-bit B/C reach the forward kernel 16-bit (packed, or as they are when stored
    # token-major); VISIONSSM_SCAN_BC16=0 converts them to float32 as a saving forward does.
    monkeypatch.setenv("VISIONSSM_SCAN_BC16", bc16)
    dtype = LOW[name]
    batch, dim, length, nstate, groups = 2, 8, 37, 16, 2 if layout == "groups" else 1
    x = make_inputs(batch, dim, length, nstate, groups, with_bc_groups_dim=layout == "groups")
    for k in ("u", "delta", "z", "B", "C"):
        x[k] = x[k].to(dtype)
    if layout == "token_major":  # (batch, N, L) views of (batch, L, N) storage, as a linear layer leaves them
        x["B"], x["C"] = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (x["B"], x["C"]))
    ref = selective_scan(**{k: v.double() for k, v in x.items()}, delta_softplus=True, return_last_state=True,
                         backend="reference")
    dev = {k: v.to(triton_device) for k, v in x.items()}
    with torch.no_grad(), _alloc.poisoned_outputs():
        out, last = selective_scan(**dev, delta_softplus=True, return_last_state=True, backend="triton")
    assert out.dtype == dtype and last.shape == (batch, dim, nstate)
    assert rel_err(out.double().cpu(), ref[0]) <= 1e-2
    assert rel_err(last.double().cpu(), ref[1]) <= 1e-4  # float32 state from the same 16-bit inputs


@pytest.mark.gpu
@pytest.mark.parametrize("nstate", [1, 16, 64])
@pytest.mark.parametrize("reverse", [False, True])
def test_triton_gpu_real_sizes_fp32(nstate, reverse):
    _check((4, 128, 1000, nstate), 1, reverse, True, torch.device("cuda"))


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_triton_gpu_real_sizes_low_precision(name):
    _check((8, 384, 197, 16), 2, False, True, torch.device("cuda"), dtype=LOW[name], tol=1e-2)


@pytest.mark.gpu
def test_triton_gpu_long_sequence():
    _check((1, 64, 6085, 16), 1, True, True, torch.device("cuda"), dtype=torch.bfloat16, tol=1e-2, ref_backend="torch")


# --- time-parallel small-N path (triton_smalln.py, N <= 4) ---------------------------------------------------
# Small tiles (16 tokens, 2 channels) so that short sequences span several tiles and several segments.
SMALL_TILES = "2,16,1"


def spy_on_scan(monkeypatch, name):
    """Replace triton_scan's autograd Function ``name`` by a subclass recording N (from A) at every call."""
    from visionssm.ops.selective_scan import triton_scan

    calls = []
    real = getattr(triton_scan, name)

    class Spy(real):
        @staticmethod
        def forward(ctx, *args):
            calls.append(args[2].shape[1])  # N, from A (dim, N)
            return real.forward(ctx, *args)

    monkeypatch.setattr(triton_scan, name, Spy)
    return calls


@pytest.fixture
def smalln_calls(monkeypatch):
    """Counts the small-N kernel's launches (the dispatch must pick it for N <= 4)."""
    monkeypatch.setenv("VISIONSSM_SCAN_SMALLN_CFG", SMALL_TILES)
    return spy_on_scan(monkeypatch, "SmallNScan")


@pytest.mark.parametrize(
    "shape,groups",
    [((2, 4, 1, 1), 1), ((2, 4, 37, 1), 1), ((1, 8, 70, 2), 2), ((2, 6, 23, 3), 3), ((1, 4, 45, 4), 1)],
)
@pytest.mark.parametrize("reverse", [False, True])
def test_smalln_fp32_matches_reference(shape, groups, reverse, smalln_calls, triton_device):
    _check(shape, groups, reverse, True, triton_device)
    assert smalln_calls == [shape[3]]


def test_smalln_without_gate_and_skip(smalln_calls, triton_device):
    _check((2, 4, 29, 1), 1, True, False, triton_device, use_z=False)
    assert smalln_calls == [1]


@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_smalln_low_precision_inputs(name, smalln_calls, triton_device):
    _check((2, 4, 45, 1), 1, True, True, triton_device, dtype=LOW[name], tol=1e-2)
    assert smalln_calls == [1]


def test_smalln_switch_keeps_old_path(smalln_calls, monkeypatch, triton_device):
    """VISIONSSM_SCAN_SMALLN=0 runs the one-token-per-step kernel for N <= 4 (both paths stay tested)."""
    monkeypatch.setenv("VISIONSSM_SCAN_SMALLN", "0")
    _check((2, 4, 37, 1), 1, True, True, triton_device)
    assert smalln_calls == []


@settings(max_examples=8, deadline=None)
@given(
    batch=st.integers(1, 2),
    groups=st.sampled_from([1, 2]),
    dim_per_group=st.integers(1, 4),
    length=st.one_of(st.just(1), st.integers(1, 60)),
    nstate=st.integers(1, 4),
    reverse=st.booleans(),
    softplus=st.booleans(),
    use_z=st.booleans(),
    use_bias=st.booleans(),
    cfg=st.sampled_from(["1,16,1", "2,16,1", "4,32,2"]),
)
def test_smalln_random_shapes_and_flags(batch, groups, dim_per_group, length, nstate, reverse, softplus, use_z,
                                        use_bias, cfg):
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    x = make_inputs(batch, groups * dim_per_group, length, nstate, groups)
    if not use_z:
        x["z"] = None
    if not use_bias:
        x["delta_bias"] = None
    if not softplus:
        # Without softplus the step must stay positive after the bias too: a negative delta makes
        # exp(delta A) > 1, and 60 such steps overflow float32 in any kernel (the float64 reference survives).
        x["delta"] = x["delta"].abs() * 0.5
        if x["delta_bias"] is not None:
            x["delta_bias"] = x["delta_bias"].abs()
    kw = dict(delta_softplus=softplus, reverse=reverse, return_last_state=True)
    ref_out, ref_g = run_with_grads(lambda **a: selective_scan(**a, backend="reference", **kw), x, lambda t: t)
    with pytest.MonkeyPatch.context() as mp, _alloc.poisoned_outputs():
        mp.setenv("VISIONSSM_SCAN_SMALLN_CFG", cfg)
        out, g = run_with_grads(lambda **a: selective_scan(**a, backend="triton", **kw), x,
                                lambda t: t.to(device=device, dtype=torch.float32))
    for o, r in zip(out, ref_out):
        assert rel_err(o, r) <= 1e-4
    for name, r in ref_g.items():
        assert rel_err(g[name], r) <= 1e-4, (name, rel_err(g[name], r))


@pytest.mark.gpu
@pytest.mark.parametrize("nstate,reverse", [(1, False), (1, True), (2, True), (4, False)])
def test_smalln_gpu_real_sizes_fp32(nstate, reverse):
    _check((4, 128, 1000, nstate), 1, reverse, True, torch.device("cuda"))


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_smalln_gpu_vmamba_shape_low_precision(name):
    # VMamba-T stage 1: 4 routes x 96 channels, 56 x 56 tokens, N = 1 (batch cut down for the reference).
    _check((2, 384, 3136, 1), 1, False, True, torch.device("cuda"), dtype=LOW[name], tol=1e-2)


@pytest.mark.gpu
def test_smalln_gpu_long_sequence_segments():
    _check((1, 64, 6085, 1), 1, True, True, torch.device("cuda"), dtype=torch.bfloat16, tol=1e-2, ref_backend="torch")
