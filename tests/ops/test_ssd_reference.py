"""SSD references: closed forms vs the recurrences / explicit sums they stand for, gradchecks, shape errors, FLOPs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from visionssm.ops import _flops
from visionssm.ops.ssd import hsm_ssd, ssd_causal, ssd_noncausal
from visionssm.ops.ssd.reference import (
    ssd_causal_reference,
    ssd_causal_sequential,
    ssd_noncausal_multiscan,
    ssd_noncausal_reference,
)

from .scan_cases import rel_err, run_with_grads
from .ssd_cases import hsm_inputs, ssd_inputs


@pytest.mark.parametrize("groups,d_per_channel", [(1, False), (3, True), (6, False)])
def test_causal_quadratic_form_equals_recurrence(groups, d_per_channel):
    x = ssd_inputs(2, 9, 6, 3, 4, groups, seed=1, d_per_channel=d_per_channel)
    kw = dict(dt_softplus=True, return_last_state=True)
    out_q, g_q = run_with_grads(lambda **a: ssd_causal_reference(**a, **kw), x, lambda t: t)
    out_s, g_s = run_with_grads(lambda **a: ssd_causal_sequential(**a, **kw), x, lambda t: t)
    for o, r in zip(out_q, out_s):
        assert rel_err(o, r) < 1e-12
    for name in g_s:
        assert rel_err(g_q[name], g_s[name]) < 1e-12, name


def test_causal_recurrence_by_hand():
    # One head, headdim 1, N 1, no groups: h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t with Python floats.
    x = ssd_inputs(1, 5, 1, 1, 1, seed=2, with_z=False, with_state=False)
    y = ssd_causal(x["x"], x["dt"].exp(), x["A"], x["B"], x["C"], backend="reference")
    h, expected = 0.0, []
    for t in range(5):
        dt = float(x["dt"][0, t, 0].exp())
        h = math.exp(dt * float(x["A"][0])) * h + dt * float(x["x"][0, t, 0, 0] * x["B"][0, t, 0, 0])
        expected.append(h * float(x["C"][0, t, 0, 0]))
    assert rel_err(y.flatten(), torch.tensor(expected, dtype=torch.float64)) < 1e-12


@pytest.mark.parametrize("interleaved", [False, True])
def test_noncausal_attention_form_equals_multiscan_integration(interleaved):
    x = ssd_inputs(2, 7, 4, 3, 5, groups=2, seed=3, with_z=False, with_state=False)
    kw = dict(dt_softplus=True, interleaved=interleaved)
    out_a, g_a = run_with_grads(lambda **a: ssd_noncausal_reference(**a, **kw), x, lambda t: t)
    out_m, g_m = run_with_grads(lambda **a: ssd_noncausal_multiscan(**a, **kw), x, lambda t: t)
    assert rel_err(out_a[0], out_m[0]) < 1e-12
    for name in g_m:
        assert rel_err(g_a[name], g_m[name]) < 1e-12, name


@pytest.mark.parametrize("interleaved", [False, True])
def test_noncausal_head_to_group_map(interleaved):
    # 4 heads, 2 groups: perturbing group 1 changes exactly the heads that read it.
    x = ssd_inputs(1, 6, 4, 2, 3, groups=2, seed=4, with_z=False, with_state=False)
    y = ssd_noncausal(**x, backend="reference", interleaved=interleaved)
    B2 = x["B"].clone()
    B2[:, :, 1] += 1.0
    y2 = ssd_noncausal(**dict(x, B=B2), backend="reference", interleaved=interleaved)
    readers = [1, 3] if interleaved else [2, 3]
    others = [h for h in range(4) if h not in readers]
    assert torch.equal(y[:, :, others], y2[:, :, others])
    assert not torch.allclose(y[:, :, readers], y2[:, :, readers])


def test_noncausal_matches_vssd_formula():
    # VSSD: KV = K^T (V * w), y = Q KV + V D with K = B, Q = C shared by all heads (ngroups = 1).
    x = ssd_inputs(2, 8, 3, 4, 5, seed=5, with_z=False, with_state=False)
    w = F.softplus(x["dt"] + x["dt_bias"]) * x["A"]
    V = x["x"].permute(0, 2, 1, 3)
    KV = x["B"][:, None, :, 0].transpose(-1, -2) @ (V * w.permute(0, 2, 1)[..., None])
    expected = (x["C"][:, None, :, 0] @ KV + V * x["D"][None, :, None, None]).permute(0, 2, 1, 3)
    y = ssd_noncausal(**x, dt_softplus=True, backend="reference")
    assert rel_err(y, expected) < 1e-12


def test_hsm_matches_token_sums():
    x = hsm_inputs(2, 5, 7, 3, inner=4, seed=6)
    y, h2 = hsm_ssd(**x, backend="reference")
    b, dim, length = x["x"].shape
    n = x["dt"].shape[1]
    for bi in range(b):
        h = torch.zeros(dim, n, dtype=torch.float64)
        for k in range(n):
            logits = x["dt"][bi, k] + x["A"][k]
            w = logits.exp() / logits.exp().sum()
            for t in range(length):
                h[:, k] += w[t] * x["B"][bi, k, t] * x["x"][bi, :, t]
        h1, g = (x["W_hz"] @ h).chunk(2)
        h2_ref = x["W_out"] @ (h1 * F.silu(g) + x["D"] * h1)
        assert rel_err(h2[bi], h2_ref) < 1e-12
        assert rel_err(y[bi], h2_ref @ x["C"][bi]) < 1e-12


def test_hsm_state_offset_A_is_inert():
    x = hsm_inputs(1, 4, 6, 3, seed=7)
    x["A"].requires_grad_(True)
    y, h2 = hsm_ssd(**x, backend="reference")
    y0, _ = hsm_ssd(**dict(x, A=None), backend="reference")
    assert rel_err(y, y0) < 1e-12
    (gA,) = torch.autograd.grad((y * torch.randn_like(y)).sum() + h2.sum(), [x["A"]])
    assert gA.abs().max() < 1e-12


def _gradcheck(fn, inputs):
    names = [k for k, v in inputs.items() if v is not None]
    leaves = [inputs[k].clone().requires_grad_(True) for k in names]
    assert torch.autograd.gradcheck(lambda *a: fn(**dict(zip(names, a))), leaves, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_gradcheck_causal(backend):
    x = ssd_inputs(1, 5, 2, 2, 3, groups=2, seed=8)
    _gradcheck(lambda **a: ssd_causal(**a, chunk_size=2, dt_softplus=True, return_last_state=True,
                                      backend=backend), x)


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_gradcheck_noncausal(backend):
    x = ssd_inputs(1, 4, 2, 2, 3, groups=1, seed=9, with_z=False, with_state=False)
    _gradcheck(lambda **a: ssd_noncausal(**a, dt_softplus=True, backend=backend), x)


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_gradcheck_hsm(backend):
    x = hsm_inputs(1, 3, 4, 2, inner=2, seed=10)
    _gradcheck(lambda **a: hsm_ssd(**a, backend=backend), x)


@pytest.mark.parametrize(
    "change,culprit",
    [
        (dict(x=torch.zeros(2, 5, 4)), "x must be"),
        (dict(dt=torch.zeros(2, 5, 3)), "dt must be"),
        (dict(A=torch.zeros(3)), "A must be"),
        (dict(B=torch.zeros(2, 5, 3, 2), C=torch.zeros(2, 5, 3, 2)), "not divisible"),
        (dict(C=torch.zeros(2, 5, 1, 3)), "C shape"),
        (dict(D=torch.zeros(5)), "D must be"),
        (dict(dt_bias=torch.zeros(2)), "dt_bias must be"),
        (dict(z=torch.zeros(2, 5, 4, 2)), "z shape"),
        (dict(initial_state=torch.zeros(2, 4, 3, 3)), "initial_state must be"),
        (dict(chunk_size=0), "chunk_size"),
        (dict(backend="cuda"), "unknown backend"),
    ],
)
def test_causal_shape_errors_name_the_culprit(change, culprit):
    x = ssd_inputs(2, 5, 4, 3, 2, dtype=torch.float32, seed=11)
    with pytest.raises(ValueError, match=culprit):
        ssd_causal(**dict(x, **change))


@pytest.mark.parametrize(
    "change,culprit",
    [
        (dict(x=torch.zeros(2, 5)), "x must be"),
        (dict(B=torch.zeros(2, 3, 5)), "B shape"),
        (dict(W_hz=torch.zeros(7, 4)), "W_hz must be"),
        (dict(W_out=torch.zeros(4, 3)), "W_out must be"),
        (dict(D=torch.zeros(2)), "D must hold"),
        (dict(A=torch.zeros(2)), "A must be"),
    ],
)
def test_hsm_shape_errors_name_the_culprit(change, culprit):
    x = hsm_inputs(2, 4, 6, 3, dtype=torch.float32, seed=12)
    with pytest.raises(ValueError, match=culprit):
        hsm_ssd(**dict(x, **change))


def test_flops_are_recorded():
    b, length, h, p, n = 2, 6, 4, 3, 5
    x = ssd_inputs(b, length, h, p, n, dtype=torch.float32, seed=13)
    hs = hsm_inputs(2, 4, 6, 3, inner=5, dtype=torch.float32, seed=14)
    with _flops.count_op_flops() as counts:
        ssd_causal(**x, backend="torch")
        ssd_noncausal(x["x"], x["dt"], x["A"], x["B"], x["C"], backend="torch")
        hsm_ssd(**hs, backend="torch")
    e = b * length * h * p
    assert counts["ssd_causal"] == 9 * e * n + 2 * e
    assert counts["ssd_noncausal"] == 4 * e * n + e
    assert counts["hsm_ssd"] == 4 * 2 * 4 * 6 * 3 + 6 * 2 * 3 * 4 * 5
