"""The chunked CPU scan's inference path (no saved states, double buffers, padded last chunk), its
token-major output, and tracing under torch.compile(fullgraph=True)."""

import pytest
import torch

from visionssm.ops import _alloc
from visionssm.ops.selective_scan import selective_scan
from visionssm.ops.selective_scan.chunked import selective_scan_chunked

from .scan_cases import make_inputs, rel_err


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("length, chunk", [(1, 4), (7, 1), (7, 2), (7, 3), (12, 4), (13, 5), (9, 9), (9, 20)])
def test_inference_path_matches_reference(reverse, length, chunk):
    x = make_inputs(2, 6, length, 4, groups=2, seed=length * 10 + chunk)
    kw = dict(delta_softplus=True, reverse=reverse, return_last_state=True)
    ref_y, ref_last = selective_scan(**x, backend="reference", **kw)
    xf = {k: v.float() for k, v in x.items()}
    with torch.no_grad(), _alloc.poisoned_outputs():
        y, last = selective_scan_chunked(**xf, chunk_size=chunk, **kw)
    assert rel_err(y, ref_y) <= 1e-5 and rel_err(last, ref_last) <= 1e-5


def test_token_major_inputs_give_a_token_major_output_view():
    b, d, length, n = 2, 8, 11, 4
    tm = lambda *s: torch.randn(*s).transpose(1, 2)  # (batch, C, L) views of (batch, L, C) memory
    y = selective_scan_chunked(tm(b, length, d), tm(b, length, d), -torch.rand(d, n), tm(b, length, n),
                               tm(b, length, n), torch.randn(d), tm(b, length, d), delta_softplus=True)
    assert y.shape == (b, d, length) and y.stride(1) == 1  # out_proj reads it without a copy


def test_traces_under_compile_fullgraph_with_grads():
    x = {k: v.float().requires_grad_(True) for k, v in make_inputs(2, 4, 7, 3, seed=11).items()}
    f = lambda **a: selective_scan_chunked(**a, delta_softplus=True, chunk_size=3, reverse=True)
    ref = f(**x)
    ref_grads = torch.autograd.grad(ref.sum(), list(x.values()))
    y = torch.compile(f, fullgraph=True, backend="aot_eager")(**x)
    grads = torch.autograd.grad(y.sum(), list(x.values()))
    torch.testing.assert_close(y, ref)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r)
