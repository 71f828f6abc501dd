"""Backward by recomputation for Triton forward kernels whose math torch already differentiates."""

from __future__ import annotations

import torch


def recompute_grads(reference, tensors, needs_input_grad, dy):
    """Grads of ``reference(*tensors)`` against cotangent dy, for the inputs that need them (None elsewhere):
    the forward is rerun in torch and autograd differentiates it."""
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_(need) if t is not None else None
                  for t, need in zip(tensors, needs_input_grad)]
        wanted = [t for t in leaves if t is not None and t.requires_grad]
        grads = iter(torch.autograd.grad(reference(*leaves), wanted, dy)) if wanted else iter(())
    return tuple(next(grads) if t is not None and t.requires_grad else None for t in leaves)
