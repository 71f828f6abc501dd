"""scan_routes: index maps as specified; torch path vs the explicit-permutation reference (float64)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from visionssm.ops import _alloc, _flops
from visionssm.ops.scan_routes import (
    atrous_routes,
    cross_routes,
    mhs_routes,
    multiscale_routes,
    routed_selective_scan,
    snake_routes,
)
from visionssm.ops.selective_scan import selective_scan

from .scan_cases import rel_err, run_with_grads

ROUTE_KINDS = ("cross", "snake", "mhs_X", "mhs_S", "atrous", "multiscale", "row")


def make_routes(kind: str, H: int, W: int) -> torch.Tensor:
    if kind == "cross":
        return cross_routes(H, W)
    if kind == "snake":
        return snake_routes(H, W)
    if kind.startswith("mhs_"):
        return mhs_routes(H, W, kind[-1])
    if kind == "atrous":
        return atrous_routes(H, W, 2)
    if kind == "multiscale":
        return multiscale_routes(H, W, 3)
    if kind == "row":
        return cross_routes(H, W)[:1]
    raise ValueError(kind)


def make_route_inputs(batch, ch, K, lmap, nstate, *, u_shared=True, dtype=torch.float64, seed=0):
    """Random map-order inputs (delta before softplus ~ N(-1, 1), A < 0)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)
    return {
        "u": r(batch, ch if u_shared else K * ch, lmap),
        "delta": r(batch, K * ch, lmap) - 1.0,
        "A": -torch.rand(K * ch, nstate, generator=g, dtype=dtype) * 4 - 0.1,
        "B": r(batch, K, nstate, lmap),
        "C": r(batch, K, nstate, lmap),
        "D": r(K * ch),
        "delta_bias": r(K * ch) * 0.5,
    }


SIZES = [(1, 1), (1, 5), (4, 1), (3, 3), (4, 6), (7, 5)]


def _is_perm(r, n):
    return torch.equal(r.sort().values, torch.arange(n))


def _neighbours(r, W):
    i, j = r // W, r % W
    return ((i[1:] - i[:-1]).abs() + (j[1:] - j[:-1]).abs() == 1).all()


@pytest.mark.parametrize("H,W", SIZES)
def test_cross_routes_are_vmamba_cross_scan(H, W):
    x = torch.randn(H, W)
    idx = cross_routes(H, W)
    assert idx.dtype == torch.long and idx.shape == (4, H * W)
    seqs = x.flatten()[idx]
    expected = [x.flatten(), x.t().flatten(), x.flatten().flip(0), x.t().flatten().flip(0)]
    for k in range(4):
        assert torch.equal(seqs[k], expected[k])


@pytest.mark.parametrize("H,W", SIZES)
def test_snake_routes_are_continuous_zigzags(H, W):
    idx = snake_routes(H, W)
    assert idx.shape == (4, H * W)
    for k in range(4):
        assert _is_perm(idx[k], H * W)
        assert H * W == 1 or _neighbours(idx[k], W)
    assert torch.equal(idx[1], idx[0].flip(0)) and torch.equal(idx[3], idx[2].flip(0))
    # Row snake: row 0 left to right, row 1 right to left; column snake: column 0 downwards first.
    assert torch.equal(idx[0][:W], torch.arange(W))
    if H > 1:
        assert torch.equal(idx[0][W : 2 * W], torch.arange(2 * W - 1, W - 1, -1))
    assert torch.equal(idx[2][:H], torch.arange(H) * W)
    assert torch.equal(mhs_routes(H, W, "C"), idx)


@pytest.mark.parametrize("H,W", SIZES)
def test_mhs_routes(H, W):
    for pattern in "CXSZ":
        idx = mhs_routes(H, W, pattern)
        assert idx.shape == (4, H * W)
        for k in range(4):
            assert _is_perm(idx[k], H * W)
        assert torch.equal(idx[1], idx[0].flip(0)) and torch.equal(idx[3], idx[2].flip(0))
    z = mhs_routes(H, W, "Z")
    assert torch.equal(z[0], torch.arange(H * W)) and torch.equal(z[2], cross_routes(H, W)[1])
    x = mhs_routes(H, W, "X")[0]
    diag = x // W + x % W
    assert (diag[1:] >= diag[:-1]).all()  # one anti-diagonal after the other
    s = mhs_routes(H, W, "S")
    assert H * W == 1 or (_neighbours(s[0], W) and _neighbours(s[2], W))
    assert torch.equal(s[0][:W], torch.arange(W))  # clockwise: along the top row first


def test_mhs_routes_known_small_cases():
    # 3x3 anti-diagonal zigzag (JPEG order) and clockwise spiral, written out by hand.
    assert mhs_routes(3, 3, "X")[0].tolist() == [0, 1, 3, 6, 4, 2, 5, 7, 8]
    assert mhs_routes(3, 3, "S")[0].tolist() == [0, 1, 2, 5, 8, 7, 6, 3, 4]
    assert mhs_routes(3, 3, "S")[2].tolist() == [6, 7, 8, 5, 2, 1, 0, 3, 4]
    with pytest.raises(ValueError, match="pattern"):
        mhs_routes(3, 3, "Q")


@pytest.mark.parametrize("H,W", [(2, 2), (4, 6), (6, 4), (8, 8)])
def test_atrous_routes_are_efficientvmamba_subgrids(H, W):
    x = torch.randn(H, W)
    idx = atrous_routes(H, W, 2)
    assert idx.shape == (4, H * W // 4)
    seqs = x.flatten()[idx]
    expected = [x[0::2, 0::2].flatten(), x[1::2, 0::2].t().flatten(), x[0::2, 1::2].flatten(),
                x[1::2, 1::2].t().flatten()]
    for k in range(4):
        assert torch.equal(seqs[k], expected[k])
    assert _is_perm(idx.flatten(), H * W)  # every pixel belongs to exactly one route
    idx3 = atrous_routes(6, 3, 3)
    assert idx3.shape == (9, 2) and _is_perm(idx3.flatten(), 18)
    with pytest.raises(ValueError, match="multiples"):
        atrous_routes(5, 4, 2)


@pytest.mark.parametrize("H,W", [(1, 1), (2, 3), (4, 4)])
def test_multiscale_routes_are_concatenated_lowres_routes(H, W):
    x = torch.randn(H, W)
    idx = multiscale_routes(H, W, 3)
    assert idx.shape == (1, 3 * H * W)
    expected = torch.cat([x.flatten().flip(0), x.t().flatten(), x.t().flatten().flip(0)])
    assert torch.equal(x.flatten()[idx[0]], expected)
    assert torch.equal(x.flatten()[multiscale_routes(H, W, 1)[0]], x.t().flatten().flip(0))
    assert multiscale_routes(H, W, 2).shape == (1, 2 * H * W)


def test_reference_matches_plain_scans_on_explicit_cross_scan():
    """Reference semantics spelled out for VMamba: scan the 4 permuted copies, un-permute, sum."""
    b, ch, H, W, n = 2, 3, 3, 4, 2
    x = make_route_inputs(b, ch, 4, H * W, n, seed=3)
    y = routed_selective_scan(**x, index=cross_routes(H, W), backend="reference")
    total = torch.zeros(b, ch, H, W, dtype=torch.float64)
    perm = [lambda t: t, lambda t: t.transpose(-1, -2), lambda t: t.flip(-1).flip(-2),
            lambda t: t.transpose(-1, -2).flip(-1).flip(-2)]
    for k in range(4):
        rows = slice(k * ch, (k + 1) * ch)
        seq = lambda t, k=k: perm[k](t.unflatten(-1, (H, W))).flatten(-2)
        yk = selective_scan(seq(x["u"]), seq(x["delta"][:, rows]), x["A"][rows], seq(x["B"][:, k : k + 1]),
                            seq(x["C"][:, k : k + 1]), D=x["D"][rows], delta_bias=x["delta_bias"][rows],
                            delta_softplus=True, backend="reference")
        inv = [lambda t: t, lambda t: t.transpose(-1, -2), lambda t: t.flip(-1).flip(-2),
               lambda t: t.flip(-1).flip(-2).transpose(-1, -2)][k]
        shape = (H, W) if k % 2 == 0 else (W, H)
        total += inv(yk.unflatten(-1, shape))
    assert rel_err(y, total.flatten(-2)) < 1e-12


def _compare(kind, H, W, batch, ch, nstate, u_shared, merge, seed, use_d=True):
    index = make_routes(kind, H, W)
    x = make_route_inputs(batch, ch, index.shape[0], H * W, nstate, u_shared=u_shared, seed=seed)
    if not use_d:
        x["D"] = x["delta_bias"] = None
    kw = dict(index=index, merge=merge)
    ref_out, ref_g = run_with_grads(lambda **a: routed_selective_scan(**a, backend="reference", **kw), x,
                                    lambda t: t)
    with _alloc.poisoned_outputs():
        out, g = run_with_grads(lambda **a: routed_selective_scan(**a, backend="torch", **kw), x, lambda t: t)
    assert out[0].shape == (batch, ch if merge else index.shape[0] * ch, H * W)
    assert rel_err(out[0], ref_out[0]) <= 1e-10
    for name, r in ref_g.items():
        assert rel_err(g[name], r) <= 1e-10, name


@pytest.mark.parametrize("kind", ROUTE_KINDS)
@pytest.mark.parametrize("u_shared,merge", [(True, True), (False, False)])
def test_torch_matches_reference(kind, u_shared, merge):
    _compare(kind, 4, 6, 2, 3, 4, u_shared, merge, seed=hash(kind) % 1000)


def random_routes(K: int, lr: int, lmap: int, seed: int) -> torch.Tensor:
    """K arbitrary routes of lr steps: positions may repeat within a route and some may never be visited."""
    return torch.randint(0, lmap, (K, lr), generator=torch.Generator().manual_seed(seed))


@settings(max_examples=10, deadline=None)
@given(
    K=st.integers(1, 5), lmap=st.integers(1, 12), lr=st.integers(1, 20), batch=st.integers(1, 2),
    ch=st.integers(1, 3), u_shared=st.booleans(), merge=st.booleans(), seed=st.integers(0, 10**6),
)
def test_torch_matches_reference_arbitrary_routes(K, lmap, lr, batch, ch, u_shared, merge, seed):
    index = random_routes(K, lr, lmap, seed)
    x = make_route_inputs(batch, ch, K, lmap, 2, u_shared=u_shared, seed=seed)
    kw = dict(index=index, merge=merge)
    ref_out, ref_g = run_with_grads(lambda **a: routed_selective_scan(**a, backend="reference", **kw), x,
                                    lambda t: t)
    with _alloc.poisoned_outputs():
        out, g = run_with_grads(lambda **a: routed_selective_scan(**a, backend="torch", **kw), x, lambda t: t)
    assert rel_err(out[0], ref_out[0]) <= 1e-10
    for name, r in ref_g.items():
        assert rel_err(g[name], r) <= 1e-10, name


@settings(max_examples=15, deadline=None)
@given(
    kind=st.sampled_from(ROUTE_KINDS),
    h=st.integers(1, 4), w=st.integers(1, 4),
    batch=st.integers(1, 2), ch=st.integers(1, 3), nstate=st.sampled_from([1, 3]),
    u_shared=st.booleans(), merge=st.booleans(), use_d=st.booleans(), seed=st.integers(0, 10**6),
)
def test_torch_matches_reference_random_shapes(kind, h, w, batch, ch, nstate, u_shared, merge, use_d, seed):
    if kind == "atrous":
        h, w = 2 * h, 2 * w
    _compare(kind, h, w, batch, ch, nstate, u_shared, merge, seed, use_d)


@pytest.mark.parametrize("kind", ["cross", "multiscale"])
def test_route_order_outputs(kind):
    """output_order='route': each route's outputs in step order; scattering them gives the map-order result."""
    index = make_routes(kind, 3, 4)
    K, lr = index.shape
    x = make_route_inputs(2, 3, K, 12, 2, seed=4)
    kw = dict(index=index, merge=False, output_order="route")
    ref_out, ref_g = run_with_grads(lambda **a: routed_selective_scan(**a, backend="reference", **kw), x,
                                    lambda t: t)
    assert ref_out[0].shape == (2, K * 3, lr)
    mapped = routed_selective_scan(**x, index=index, merge=False, backend="reference")
    scattered = ref_out[0].new_zeros(2, K, 3, 12).index_put_(
        (torch.arange(2)[:, None, None, None], torch.arange(K)[None, :, None, None],
         torch.arange(3)[None, None, :, None], index[None, :, None, :]), ref_out[0].view(2, K, 3, lr), accumulate=True)
    assert rel_err(scattered.view(2, K * 3, 12), mapped) < 1e-12
    with _alloc.poisoned_outputs():
        out, g = run_with_grads(lambda **a: routed_selective_scan(**a, backend="torch", **kw), x, lambda t: t)
    assert rel_err(out[0], ref_out[0]) <= 1e-10
    for name, r in ref_g.items():
        assert rel_err(g[name], r) <= 1e-10, name
    with pytest.raises(ValueError, match="output_order"):
        routed_selective_scan(**x, index=index, output_order="route", backend="torch")


def test_low_precision_output_dtype_and_float32_out():
    index = cross_routes(3, 4)
    x = make_route_inputs(1, 2, 4, 12, 2, dtype=torch.float32)
    x["u"] = x["u"].bfloat16()
    y = routed_selective_scan(**x, index=index, backend="torch")
    assert y.dtype == torch.bfloat16
    y32 = routed_selective_scan(**x, index=index, backend="torch", out_dtype=torch.float32)
    ref = routed_selective_scan(**x, index=index, backend="reference", out_dtype=torch.float32)
    assert y32.dtype == torch.float32 and rel_err(y32, ref) < 1e-5


def test_flops_are_counted():
    index = cross_routes(3, 4)
    x = make_route_inputs(2, 5, 4, 12, 3)
    with _flops.count_op_flops() as counts:
        routed_selective_scan(**x, index=index, backend="torch")
    assert counts["selective_scan"] == 9 * 2 * 12 * 20 * 3 + 2 * 20 * 12


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(index=torch.zeros(4, 12)), "integer"),
        (dict(index=cross_routes(3, 4)[:3]), "multiple of K"),
        (dict(u=torch.randn(2, 7, 12)), "u shape"),
        (dict(A=torch.randn(19, 3)), "A must be"),
        (dict(B=torch.randn(2, 4, 3, 11)), "B must be"),
        (dict(D=torch.randn(5)), "D must be"),
        (dict(index=cross_routes(3, 4) + 1), "index values"),
    ],
)
def test_bad_inputs_raise_one_line_errors(change, match):
    args = make_route_inputs(2, 5, 4, 12, 3)
    args["index"] = cross_routes(3, 4)
    args.update(change)
    with pytest.raises(ValueError, match=match):
        routed_selective_scan(**args, backend="torch")


def test_torch_path_compiles_fullgraph():
    index = snake_routes(3, 3)
    x = make_route_inputs(2, 2, 4, 9, 3, dtype=torch.float32, seed=7)
    fn = torch.compile(lambda **a: routed_selective_scan(**a, index=index, backend="torch"), fullgraph=True)
    ref_out, ref_g = run_with_grads(lambda **a: routed_selective_scan(**a, index=index, backend="reference"),
                                    {k: v.double() for k, v in x.items()}, lambda t: t)
    out, g = run_with_grads(fn, x, lambda t: t)
    assert rel_err(out[0], ref_out[0]) < 1e-5
    for name, r in ref_g.items():
        assert rel_err(g[name], r) < 1e-5, name
