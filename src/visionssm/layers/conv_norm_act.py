"""Conv -> optional BatchNorm -> optional activation, with the submodule names ``conv``/``norm``/``act``.

timm's ConvNormAct names its norm ``bn``; the MLLA/VSSD ``ConvLayer`` and EfficientViM ``ConvLayer1D/2D``
name it ``norm``, so this keeps their checkpoint keys (``....conv.weight``, ``....norm.running_mean``).
official: YuHengsss/VSSD : classification/models/mamba_util.py; mlvlab/EfficientViM : classification/models/utils.py
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["ConvNormAct"]


class ConvNormAct(nn.Module):
    """``act(norm(conv(x)))`` for (B, C, L) (``ndim=1``) or (B, C, H, W) (``ndim=2``) inputs."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        bias: bool = False,
        norm: bool = True,
        act_layer: type[nn.Module] | None = None,
        ndim: int = 2,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if ndim not in (1, 2):
            raise ValueError(f"ConvNormAct: ndim must be 1 or 2, got {ndim}")
        dd = dict(device=device, dtype=dtype)
        conv, bn = (nn.Conv1d, nn.BatchNorm1d) if ndim == 1 else (nn.Conv2d, nn.BatchNorm2d)
        self.conv = conv(in_chs, out_chs, kernel_size, stride, padding, groups=groups, bias=bias, **dd)
        self.norm = bn(out_chs, **dd) if norm else None
        self.act = act_layer() if act_layer is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = self.act(x)
        return x
