"""FLOP accounting for our ops, which torch's FlopCounterMode cannot see.

A scan runs inside an autograd.Function or a Triton kernel, so aten-level counters report 0 for it.
Each op's public function calls ``add(op, flops)``; inside ``count_op_flops()`` the numbers are summed per
op name (and per module path, when the caller provides one), otherwise ``add`` is a cheap no-op.
Conventions: selective scan = 9*B*L*D*N + B*D*L (D skip) + B*D*L (z gate) -- state-spaces/mamba#110.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict

_active: list[dict[str, int]] = []


def add(op: str, flops: int) -> None:
    """Record ``flops`` forward FLOPs of one call of ``op`` in every open counting context."""
    for counts in _active:
        counts[op] += int(flops)


@contextlib.contextmanager
def count_op_flops():
    """``with count_op_flops() as counts: model(x)`` -> counts[op_name] = forward FLOPs."""
    counts: dict[str, int] = defaultdict(int)
    _active.append(counts)
    try:
        yield counts
    finally:  # by identity: two open contexts may hold equal dicts
        _active[:] = [c for c in _active if c is not counts]


def selective_scan_flops(batch: int, dim: int, length: int, n_state: int, has_d: bool, has_z: bool) -> int:
    return 9 * batch * length * dim * n_state + (batch * dim * length if has_d else 0) + (
        batch * dim * length if has_z else 0
    )
