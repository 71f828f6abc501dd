"""FLOP accounting for our ops, which torch's FlopCounterMode cannot see.

A scan runs inside an autograd.Function or a Triton kernel, so aten-level counters report 0 for it.
Each op's public function calls ``add(op, flops)``; inside ``count_op_flops()`` the numbers are summed per
op name (and per module path, when the caller provides one), otherwise ``add`` is a cheap no-op.
Conventions: selective scan = 9*B*L*D*N + B*D*L (D skip) + B*D*L (z gate) -- state-spaces/mamba#110.
"""

from __future__ import annotations

import contextlib
import sys
from collections import defaultdict

_active: list[dict[str, int]] = []
_hiding = 0  # open hidden_inside_ops contexts (they need every add call, to remember its frame)


def counting() -> bool:
    """Someone listens to ``add`` (callers skip computing their counts otherwise: host time per call)."""
    return bool(_active) or _hiding > 0


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


@contextlib.contextmanager
def hidden_inside_ops(counter):
    """aten ops that run inside one of our ops are not counted: the op reports its analytic count.

    An op's public function calls ``_flops.add`` first; the frame that called it is remembered, and the
    counter skips an aten op while such a frame is on the Python stack (e.g. the einsums of the SSD torch path,
    the contraction of the chunked scan). Ops that report nothing (conv1d) stay counted by aten.
    """
    frames: set = set()
    global add, _hiding
    original, count = add, getattr(counter, "_count_flops", None)

    def remembering_add(op, n):
        frames.add(sys._getframe(1))
        original(op, n)

    def filtered_count(func_packet, out, args, kwargs):
        f = sys._getframe(1)
        while f is not None:
            if f in frames:
                return out
            f = f.f_back
        return count(func_packet, out, args, kwargs)

    add = remembering_add
    _hiding += 1
    if count is not None:  # a private hook of torch's counter; without it, nothing is filtered
        counter._count_flops = filtered_count
    try:
        yield
    finally:
        add = original
        _hiding -= 1
        if count is not None:
            del counter._count_flops
        frames.clear()
