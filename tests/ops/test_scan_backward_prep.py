"""The selective-scan backward's prep launch: zeroed accumulators and At = A^T log2(e), every element written."""

import math

import pytest
import torch

from visionssm.ops import _alloc
from visionssm.ops.selective_scan.triton_prep import backward_prep


@pytest.mark.parametrize("dim, nstate, n_zero", [(64, 16, 5000), (96, 1, 10), (192, 16, 100)])
@pytest.mark.parametrize("two", [False, True])
def test_backward_prep(dim, nstate, n_zero, two, triton_device):
    # zeros spanning more programs than At (5000 vs 1024 elements, blocks of 2048), both in one program, and At
    # spanning more programs than the zeros (3072 vs 100): each region is masked on its own
    A = -torch.rand(dim, nstate, device=triton_device) * 4 - 0.5
    with _alloc.poisoned_outputs():
        if two:  # Vim's two directions: At over A's rows, then A2's
            *zeros, At = backward_prep(A[: dim // 2].contiguous(), (n_zero - 3, 3), A[dim // 2:].contiguous())
        else:
            *zeros, At = backward_prep(A, (n_zero - 3, 3))
    assert [z.shape for z in zeros] == [(n_zero - 3,), (3,)] and At.shape == (nstate * dim,)
    for z in zeros:
        assert torch.equal(z, torch.zeros_like(z))
    torch.testing.assert_close(At.view(nstate, dim), A.t() / math.log(2.0), rtol=1e-6, atol=0)
