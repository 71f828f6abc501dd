"""Switch timm models between PyTorch SDPA (FlashAttention / memory-efficient kernels) and naive attention.

timm reads its global switch (``timm.layers.set_fused_attn`` / ``TIMM_FUSED_ATTN``) once, when each attention
module is built, into the module's ``fused_attn`` attribute; the forward then branches on that attribute
(``F.scaled_dot_product_attention`` vs ``softmax(q @ k^T) @ v``). So for an already-built model the switch is
the per-module attribute, which is what :func:`set_attention` flips (timm 1.0.x: vision_transformer.Attention,
layers.Attention, swin_transformer.WindowAttention, ...). Swin's window attention counts as "experimental" in
timm and is built with ``fused_attn=False`` by default; ``set_attention(model, "sdpa")`` turns it on too.
"""

from __future__ import annotations

import torch.nn as nn

IMPLS = ("sdpa", "naive")


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """Modules whose forward branches on timm's ``fused_attn`` flag."""
    return [m for m in model.modules() if isinstance(getattr(m, "fused_attn", None), bool)]


def has_attention(model: nn.Module) -> bool:
    return bool(attention_modules(model))


def set_attention(model: nn.Module, impl: str) -> int:
    """Use ``impl`` ("sdpa" or "naive") in every attention module of ``model``; returns how many were set."""
    if impl not in IMPLS:
        raise ValueError(f"attention must be one of {IMPLS}, got {impl!r}")
    mods = attention_modules(model)
    for m in mods:
        m.fused_attn = impl == "sdpa"
    return len(mods)


def attention_impl(model: nn.Module) -> str | None:
    """"sdpa", "naive", "mixed", or None for a model without timm attention modules."""
    flags = {m.fused_attn for m in attention_modules(model)}
    if not flags:
        return None
    if len(flags) > 1:
        return "mixed"
    return "sdpa" if flags.pop() else "naive"
