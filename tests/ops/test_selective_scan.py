"""selective_scan: reference vs an explicit closed form, torch backend vs the float64 reference."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from visionssm.ops import _alloc
from visionssm.ops.selective_scan import resolve_backend, selective_scan
from visionssm.ops.selective_scan.chunked import selective_scan_chunked

from .scan_cases import make_inputs, rel_err, run_with_grads


def closed_form(u, delta, A, B, C, D, z, reverse):
    """y_t = sum_k C_t . (prod_{j in (k, t]} exp(delta_j A)) delta_k B_k u_k, written with Python scalars."""
    batch, dim, length = u.shape
    nstate = A.shape[1]
    y = torch.zeros(batch, dim, length, dtype=torch.float64)
    order = list(range(length))[::-1] if reverse else list(range(length))
    for b in range(batch):
        for d in range(dim):
            for pos, t in enumerate(order):
                acc = 0.0
                for kpos in range(pos + 1):
                    k = order[kpos]
                    for n in range(nstate):
                        decay = math.exp(sum(float(delta[b, d, order[j]] * A[d, n]) for j in range(kpos + 1, pos + 1)))
                        acc += float(C[b, 0, n, t]) * decay * float(delta[b, d, k] * B[b, 0, n, k] * u[b, d, k])
                acc += float(D[d] * u[b, d, t])
                y[b, d, t] = acc * float(z[b, d, t] * torch.sigmoid(z[b, d, t]))
    return y


@pytest.mark.parametrize("reverse", [False, True])
def test_reference_matches_closed_form(reverse):
    x = make_inputs(2, 3, 5, 2, seed=1)
    delta = torch.nn.functional.softplus(x["delta"])
    y = selective_scan(x["u"], delta, x["A"], x["B"], x["C"], x["D"], x["z"], reverse=reverse, backend="reference")
    expected = closed_form(x["u"], delta, x["A"], x["B"], x["C"], x["D"], x["z"], reverse)
    assert rel_err(y, expected) < 1e-12


def _compare(batch, dim, length, nstate, groups, reverse, last_state, *, use_z=True, use_d=True, chunk=None, seed=None):
    x = make_inputs(batch, dim, length, nstate, groups, seed=seed)
    if not use_z:
        x["z"] = None
    if not use_d:
        x["D"] = None
    kw = dict(delta_softplus=True, reverse=reverse, return_last_state=last_state)
    ref_out, ref_g = run_with_grads(lambda **a: selective_scan(**a, backend="reference", **kw), x, lambda t: t)
    with _alloc.poisoned_outputs():
        out, g = run_with_grads(
            lambda **a: selective_scan_chunked(**a, chunk_size=chunk, **kw), x, lambda t: t.float()
        )
    # float32 rounding, bounded by the float32 reference's on the same draw (ill-conditioned draws exist: a fixed
    # 1e-5 failed at 1.13e-5 on a gradient in a 120-example hypothesis run)
    out32, g32 = run_with_grads(lambda **a: selective_scan(**a, backend="reference", **kw), x, lambda t: t.float())
    for o, o32, r in zip(out, out32, ref_out):
        assert o.dtype == torch.float32
        assert rel_err(o, r) <= max(1e-5, 20 * rel_err(o32, r))
    for name, r in ref_g.items():
        assert g[name].dtype == torch.float32, name
        assert rel_err(g[name], r) <= max(1e-5, 20 * rel_err(g32[name], r)), name


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 3),
    dim_per_group=st.integers(1, 5),
    groups=st.sampled_from([1, 2, 3]),
    length=st.one_of(st.just(1), st.integers(1, 40)),
    nstate=st.sampled_from([1, 3, 16]),
    chunk=st.one_of(st.none(), st.integers(1, 9)),
    reverse=st.booleans(),
    last_state=st.booleans(),
)
def test_torch_backend_matches_reference_random_shapes(
    batch, dim_per_group, groups, length, nstate, chunk, reverse, last_state
):
    _compare(batch, dim_per_group * groups, length, nstate, groups, reverse, last_state, chunk=chunk)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("length", [1, 2, 17, 64])
def test_torch_backend_fixed_shapes(reverse, length):
    _compare(2, 6, length, 4, 1, reverse, True, chunk=8)


def test_without_gate_and_skip():
    _compare(2, 4, 11, 3, 2, False, False, use_z=False, use_d=False, chunk=4)


def test_bc_without_group_axis():
    x = make_inputs(2, 4, 9, 3, seed=3, with_bc_groups_dim=False)
    assert x["B"].dim() == 3
    y3 = selective_scan(**x, delta_softplus=True, backend="torch")
    x4 = dict(x, B=x["B"].unsqueeze(1), C=x["C"].unsqueeze(1))
    y4 = selective_scan(**x4, delta_softplus=True, backend="reference")
    assert rel_err(y3, y4) < 1e-12


def test_groups_mean_one_bc_per_block_of_channels():
    # With groups=2, channels 0..dim/2-1 must see only group 0's B and C.
    x = make_inputs(1, 4, 6, 2, groups=2, seed=4)
    y = selective_scan(**x, delta_softplus=True, backend="torch")
    x2 = dict(x)
    x2["B"] = x["B"].clone()
    x2["B"][:, 1] += 10.0  # perturb group 1 only
    y2 = selective_scan(**x2, delta_softplus=True, backend="torch")
    assert torch.equal(y[:, :2], y2[:, :2])
    assert not torch.allclose(y[:, 2:], y2[:, 2:])


@pytest.mark.parametrize("reverse", [False, True])
def test_reverse_equals_flipped_forward(reverse):
    x = make_inputs(2, 3, 10, 4, seed=5)
    flip = lambda t: t.flip(-1)
    y = selective_scan(**x, delta_softplus=True, reverse=True, backend="torch")
    xf = dict(x, u=flip(x["u"]), delta=flip(x["delta"]), B=flip(x["B"]), C=flip(x["C"]), z=flip(x["z"]))
    yf = selective_scan(**xf, delta_softplus=True, backend="torch")
    assert rel_err(y, flip(yf)) < 1e-12


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_gradcheck_float64(backend):
    x = make_inputs(1, 2, 5, 2, groups=2, seed=6)
    names = list(x)
    leaves = [x[k].clone().requires_grad_(True) for k in names]

    def f(*args):
        y, last = selective_scan(
            **dict(zip(names, args)), delta_softplus=True, return_last_state=True, reverse=True, backend=backend
        )
        return y, last

    assert torch.autograd.gradcheck(f, leaves, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_low_precision_inputs_return_input_dtype():
    x = make_inputs(2, 4, 7, 3, seed=7)
    for dt in (torch.bfloat16, torch.float16):
        xs = {k: (v.to(dt) if k in ("u", "delta", "B", "C", "z") else v.float()) for k, v in x.items()}
        y = selective_scan(**xs, delta_softplus=True, backend="torch")
        ref = selective_scan(**{k: v.double() for k, v in xs.items()}, delta_softplus=True, backend="reference")
        assert y.dtype == dt
        assert rel_err(y, ref) < 1e-2


def test_bad_shapes_name_the_culprit():
    x = make_inputs(2, 4, 7, 3, seed=8)
    with pytest.raises(ValueError, match="delta"):
        selective_scan(**dict(x, delta=x["delta"][..., :-1]))
    with pytest.raises(ValueError, match="A must be"):
        selective_scan(**dict(x, A=x["A"][:2]))
    with pytest.raises(ValueError, match="B shape"):
        selective_scan(**dict(x, B=x["B"][..., :-1]))
    with pytest.raises(ValueError, match="divisible"):
        selective_scan(**dict(x, C=torch.randn(2, 3, 3, 7, dtype=torch.float64)))
    with pytest.raises(ValueError, match="delta_bias"):
        selective_scan(**dict(x, delta_bias=torch.zeros(5, dtype=torch.float64)))
    with pytest.raises(ValueError, match="unknown backend"):
        selective_scan(**x, backend="cuda")


def test_backend_resolution(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv("VISIONSSM_BACKEND", raising=False)
    assert resolve_backend(None, cpu) == "torch"
    monkeypatch.setenv("VISIONSSM_BACKEND", "reference")
    assert resolve_backend(None, cpu) == "reference"
    assert resolve_backend("torch", cpu) == "torch"
