"""Shared model-test steps: a few optimiser steps on a fixed batch, and gradients with/without checkpointing."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2


def adamw_losses(model, img_size: int, lr: float = 3e-3, steps: int = 6, classes: int = 10) -> list[float]:
    """Losses of ``steps`` AdamW steps (timm's optimizer factory, weight decay 0.05) on one random batch."""
    opt = create_optimizer_v2(model, "adamw", lr=lr, weight_decay=0.05)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, img_size, img_size, generator=g), torch.randint(0, classes, (8,), generator=g)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def grads_with_and_without_checkpointing(model, x):
    """Parameter gradients of mean(model(x)^2) without, then with ``set_grad_checkpointing(True)``."""

    def grads():
        model.zero_grad()
        model(x).square().mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.set_grad_checkpointing(True)
    return plain, grads()
