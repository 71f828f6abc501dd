"""Output allocation shared by all op backends.

Tests switch on poisoning so every output starts as NaN: an element a kernel forgets to write then fails
the comparison instead of passing by luck with whatever memory held.
"""

from __future__ import annotations

import contextlib

import torch

_poison = False


def empty(*shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if _poison and (dtype.is_floating_point or dtype.is_complex):
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.empty(*shape, dtype=dtype, device=device)


def empty_strided(size: tuple, stride: tuple, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    out = torch.empty_strided(size, stride, dtype=dtype, device=device)
    return out.fill_(float("nan")) if _poison and dtype.is_floating_point else out


def empty_like(x: torch.Tensor) -> torch.Tensor:
    """Same shape, dtype and (dense) memory layout as ``x``."""
    out = torch.empty_like(x)
    return out.fill_(float("nan")) if _poison and x.dtype.is_floating_point else out


@contextlib.contextmanager
def poisoned_outputs(enabled: bool = True):
    """Within the block, op outputs are allocated NaN-filled (for tests)."""
    global _poison
    old, _poison = _poison, enabled
    try:
        yield
    finally:
        _poison = old
