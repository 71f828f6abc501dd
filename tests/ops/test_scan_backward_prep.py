"""The selective-scan backward's prep launch: zeroed accumulators and At = A^T log2(e), every element written."""

import math

import pytest
import torch

from visionssm.ops import _alloc
from visionssm.ops.selective_scan.triton_prep import backward_prep


@pytest.mark.parametrize("dim, nstate, n_zero", [(64, 16, 5000), (96, 1, 10), (8, 64, 3000)])
def test_backward_prep(dim, nstate, n_zero, triton_device):
    # n_zero above, below and between the At plane's size and the block: both regions are masked on their own
    A = -torch.rand(dim, nstate, device=triton_device) * 4 - 0.5
    with _alloc.poisoned_outputs():
        zeros, At = backward_prep(A, n_zero)
    assert zeros.shape == (n_zero,) and At.shape == (nstate, dim) and At.is_contiguous()
    assert torch.equal(zeros, torch.zeros_like(zeros))
    torch.testing.assert_close(At, A.t() / math.log(2.0), rtol=1e-6, atol=0)
