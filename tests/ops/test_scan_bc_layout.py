"""B/C layout kernels of the Triton scan (triton_bc_layout.py) vs the torch ops they replace, into poisoned outputs.

Pure data movement: results equal the torch transposes and casts exactly, up to one rounding to a low precision.
"""

from __future__ import annotations

import pytest
import torch

from visionssm.ops import _alloc
from visionssm.ops.selective_scan.triton_bc_layout import pack_bc, unpack_bc_grads


def _as_bgln(t):
    """torch's version: (batch, [G,] N, L) -> float32 (batch, G, L, N) contiguous (16-bit -> float32 is exact)."""
    return (t if t.dim() == 4 else t.unsqueeze(1)).transpose(-1, -2).float().contiguous()


@pytest.mark.parametrize("count", [2, 4])
@pytest.mark.parametrize("shape", [(2, 16, 67), (3, 2, 1, 1), (1, 3, 64, 130), (2, 5, 70)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("keep_dtype", [False, True])
def test_pack_bc_matches_torch(triton_device, count, shape, dtype, keep_dtype):
    g = torch.Generator().manual_seed(hash((count, shape)) % 2**31)
    # alternate layouts: contiguous, token-major storage (a transposed view), and a sliced view
    xs = []
    for k in range(count):
        if k % 3 == 0:
            x = torch.randn(*shape, generator=g)
        elif k % 3 == 1:
            x = torch.randn(*shape[:-2], shape[-1], shape[-2], generator=g).transpose(-1, -2)
        else:
            x = torch.randn(*shape[:-1], shape[-1] + 3, generator=g)[..., 2:-1]
        xs.append(x.to(dtype).to(triton_device))
    with _alloc.poisoned_outputs():
        got = pack_bc(tuple(xs), dtype if keep_dtype else torch.float32)
    assert len(got) == count
    for x, y in zip(xs, got):
        assert y.dtype == (dtype if keep_dtype else torch.float32) and y.is_contiguous()
        assert torch.equal(y.float(), _as_bgln(x))


@pytest.mark.parametrize("n_dir", [1, 2])
@pytest.mark.parametrize("shape", [(2, 16, 67), (2, 3, 1, 1), (1, 2, 64, 130)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_unpack_bc_grads_matches_torch(triton_device, n_dir, shape, dtype):
    batch, length, nstate = shape[0], shape[-1], shape[-2]
    groups = shape[1] if len(shape) == 4 else 1
    g = torch.Generator().manual_seed(n_dir + len(shape))
    rows = torch.randn(batch, n_dir * groups, length, 2 * nstate, generator=g).to(triton_device)
    with _alloc.poisoned_outputs():
        got = unpack_bc_grads(rows, torch.Size(shape), dtype, n_dir, groups)
    ref = rows.view(batch, n_dir, groups, length, 2, nstate).permute(1, 4, 0, 2, 5, 3)  # (dir, B|C, b, G, N, L)
    assert len(got) == 2 * n_dir
    for t, y in enumerate(got):
        assert y.shape == shape and y.dtype == dtype and y.is_contiguous()
        want = ref[t // 2, t % 2].reshape(shape)
        if dtype == torch.float32:
            assert torch.equal(y, want)
        else:  # one rounding each; the interpreter's may differ from torch's round-to-nearest-even by an ulp
            torch.testing.assert_close(y, want.to(dtype), rtol=2**-7, atol=0)


@pytest.mark.parametrize("dim, nstate, zero_sizes", [(64, 16, (5000, 64, 64)), (8, 1, (3, 8)), (192, 16, (100,))])
@pytest.mark.parametrize("two", [False, True])
def test_pack_bc_with_backward_prep(triton_device, dim, nstate, zero_sizes, two):
    # the backward's zeroed accumulators and At = A^T log2(e) from the pack launch (few programs: 1 x 2 x 2 here,
    # so each loops over several blocks of the zeros and of At); two: Vim's directions, At over A's rows then A2's
    g = torch.Generator().manual_seed(dim)
    xs = tuple(torch.randn(2, nstate, 40, generator=g).to(triton_device) for _ in range(2))
    A = (-torch.rand(dim, nstate, generator=g) * 4 - 0.5).to(triton_device)
    A1, A2 = (A[: dim // 2].contiguous(), A[dim // 2:].contiguous()) if two else (A, None)
    with _alloc.poisoned_outputs():
        *packed, = pack_bc(xs, torch.float32, (A1, A2, zero_sizes))
    assert len(packed) == 2 + len(zero_sizes) + 1
    for x, y in zip(xs, packed[:2]):
        assert torch.equal(y, _as_bgln(x))
    for z, n in zip(packed[2:-1], zero_sizes):
        assert z.shape == (n,) and torch.equal(z, torch.zeros_like(z))
    torch.testing.assert_close(packed[-1].view(nstate, dim), A.t() * 1.4426950408889634, rtol=1e-6, atol=0)
