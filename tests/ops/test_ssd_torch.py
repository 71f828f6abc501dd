"""SSD torch paths (chunked causal, matmul non-causal / HSM) vs the float64 references: outputs and every gradient."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from visionssm.ops import _alloc
from visionssm.ops.ssd import hsm_ssd, ssd_causal, ssd_noncausal

from .scan_cases import rel_err, run_with_grads
from .ssd_cases import hsm_inputs, ssd_inputs


def compare(op, inputs, tol=1e-5, dtype=torch.float32, backend="torch", inert=(), **kw):
    """``inert``: inputs whose true gradient is 0 (compared by absolute size, rounding has no scale there)."""
    ref_out, ref_g = run_with_grads(lambda **a: op(**a, backend="reference", **kw), inputs, lambda t: t)
    with _alloc.poisoned_outputs():
        out, g = run_with_grads(lambda **a: op(**a, backend=backend, **kw), inputs, lambda t: t.to(dtype))
    for o, r in zip(out, ref_out):
        assert o.dtype == dtype
        assert rel_err(o, r) <= tol
    for name, r in ref_g.items():
        assert g[name].dtype == dtype, name
        if name in inert:
            assert g[name].abs().max() <= tol and r.abs().max() <= 1e-12, name
        else:
            assert rel_err(g[name], r) <= tol, name


@settings(max_examples=30, deadline=None)
@given(
    batch=st.integers(1, 2),
    length=st.one_of(st.just(1), st.integers(1, 40)),
    heads_per_group=st.integers(1, 3),
    groups=st.sampled_from([1, 2]),
    headdim=st.integers(1, 4),
    nstate=st.sampled_from([1, 3, 8]),
    chunk=st.integers(1, 16),
    use_z=st.booleans(),
    use_state=st.booleans(),
    last_state=st.booleans(),
    d_per_channel=st.booleans(),
)
def test_causal_chunked_matches_reference(batch, length, heads_per_group, groups, headdim, nstate, chunk, use_z,
                                          use_state, last_state, d_per_channel):
    x = ssd_inputs(batch, length, heads_per_group * groups, headdim, nstate, groups, d_per_channel=d_per_channel,
                   with_z=use_z, with_state=use_state)
    # float64: exact up to rounding, so any slip in the chunked algebra shows (float32 is checked below).
    compare(ssd_causal, x, tol=1e-10, dtype=torch.float64, chunk_size=chunk, dt_softplus=True,
            return_last_state=last_state)


@pytest.mark.parametrize("length,chunk", [(1, 4), (7, 7), (13, 4), (64, 16), (65, 64)])
def test_causal_chunked_fixed_shapes(length, chunk):
    compare(ssd_causal, ssd_inputs(2, length, 4, 3, 5, groups=2, seed=length), chunk_size=chunk, dt_softplus=True,
            return_last_state=True)


def test_causal_long_sequence_strong_decay_is_stable():
    # Cumulative log-decay reaches about -400: exp(cumsum) underflows, per-chunk differences must not.
    x = ssd_inputs(1, 200, 2, 2, 3, seed=21, with_z=False, with_state=False)
    x["dt"] = x["dt"].abs() + 1.0
    compare(ssd_causal, x, tol=1e-10, dtype=torch.float64, chunk_size=16, return_last_state=True)


@settings(max_examples=20, deadline=None)
@given(
    batch=st.integers(1, 2),
    length=st.integers(1, 20),
    heads_per_group=st.integers(1, 3),
    groups=st.sampled_from([1, 2, 3]),
    headdim=st.integers(1, 4),
    nstate=st.sampled_from([1, 4]),
    interleaved=st.booleans(),
    use_d=st.booleans(),
)
def test_noncausal_matches_reference(batch, length, heads_per_group, groups, headdim, nstate, interleaved, use_d):
    x = ssd_inputs(batch, length, heads_per_group * groups, headdim, nstate, groups, with_z=False, with_state=False)
    if not use_d:
        x["D"] = None
    compare(ssd_noncausal, x, tol=1e-10, dtype=torch.float64, dt_softplus=True, interleaved=interleaved)


@settings(max_examples=15, deadline=None)
@given(
    batch=st.integers(1, 2),
    dim=st.integers(1, 6),
    length=st.integers(1, 20),
    nstate=st.integers(1, 5),
    inner=st.integers(1, 5),
    use_a=st.booleans(),
)
def test_hsm_matches_reference(batch, dim, length, nstate, inner, use_a):
    x = hsm_inputs(batch, dim, length, nstate, inner)
    if not use_a:
        x["A"] = None
    compare(hsm_ssd, x, tol=1e-10, dtype=torch.float64, inert=("A",))


@pytest.mark.parametrize("seed", [0, 1])
def test_float32_paths(seed):
    compare(ssd_noncausal, ssd_inputs(2, 30, 4, 8, 16, 2, seed=seed, with_z=False, with_state=False), dt_softplus=True)
    compare(hsm_ssd, hsm_inputs(2, 16, 49, 9, seed=seed), inert=("A",))


def test_low_precision_inputs_return_input_dtype():
    x = ssd_inputs(2, 9, 4, 3, 5, seed=22)
    for dt in (torch.bfloat16, torch.float16):
        xs = {k: (v.to(dt) if k in ("x", "B", "C", "z") else v.float()) for k, v in x.items()}
        y = ssd_causal(**xs, chunk_size=4, dt_softplus=True, backend="torch")
        ref = ssd_causal(**{k: v.double() for k, v in xs.items()}, dt_softplus=True, backend="reference")
        assert y.dtype == dt
        assert rel_err(y, ref) < 1e-2
