"""Calling an op's autograd.Function only when a gradient can flow.

``Function.apply`` builds graph bookkeeping on every call: tens of microseconds of host time on a slow host,
and inference (VMamba-T makes 62 such calls per forward) is often host-bound. With grad mode off, or no tensor
argument requiring grad, the Function's forward runs as a plain function on a stand-in context instead.
"""

from __future__ import annotations

import torch


class _NoGradCtx:
    """The parts of autograd's ctx that our forwards use; nothing is kept."""

    def __init__(self, n_args: int):
        self.needs_input_grad = (False,) * n_args

    def save_for_backward(self, *tensors):
        pass

    def set_materialize_grads(self, value: bool):
        pass

    def mark_non_differentiable(self, *tensors):
        pass


def apply(fn: type[torch.autograd.Function], *args):
    """``fn.apply(*args)``, or ``fn.forward`` called directly when no gradient is needed."""
    if not torch.is_grad_enabled():  # already recording nothing
        return fn.forward(_NoGradCtx(len(args)), *args)
    if any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
        return fn.apply(*args)
    with torch.no_grad():  # as inside Function.apply: the forward records no graph
        return fn.forward(_NoGradCtx(len(args)), *args)
