"""Image -> token sequence for plain models with a *middle* class token (Vim).

``PatchEmbed`` allows a stride below the patch size (Vim-† uses overlapping 16x16 patches at stride 8);
the helpers insert / remove the class token at index M//2 and resample a pos_embed whose class slot
sits there (the official fine-tune script treats index 0 as the class slot instead; spec §1.5).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import resample_abs_pos_embed, to_2tuple

__all__ = ["PatchEmbed", "insert_mid_cls", "split_mid_cls", "resample_pos_embed_mid_cls"]


class PatchEmbed(nn.Module):
    """Conv2d patchify (bias, no norm); ``forward`` returns the NCHW map (B, D, Gh, Gw).

    official: hustvl/Vim : vim/models_mamba.py (PatchEmbed; grid (H - patch) // stride + 1 per axis).
    """

    def __init__(self, img_size=224, patch_size=16, stride=16, in_chans=3, embed_dim=192,
                 device=None, dtype=None):
        super().__init__()
        self.patch_size, self.stride = to_2tuple(patch_size), to_2tuple(stride)
        self.img_size = to_2tuple(img_size)
        self.grid_size = self.feat_size(self.img_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, self.patch_size, self.stride, device=device, dtype=dtype)

    def feat_size(self, img_size) -> tuple[int, int]:
        return tuple((s - p) // st + 1 for s, p, st in zip(to_2tuple(img_size), self.patch_size, self.stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def insert_mid_cls(x: torch.Tensor, cls_token: torch.Tensor) -> torch.Tensor:
    """(B, M, D) patch tokens + (1, 1, D) token -> (B, M+1, D) with the token at index M//2."""
    mid = x.shape[1] // 2
    cls = cls_token.expand(x.shape[0], -1, -1).to(x.dtype)
    return torch.cat([x[:, :mid], cls, x[:, mid:]], dim=1)


def split_mid_cls(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, M+1, D) -> patch tokens (B, M, D) and the class token (B, 1, D) taken from index M//2."""
    mid = (x.shape[1] - 1) // 2
    return torch.cat([x[:, :mid], x[:, mid + 1 :]], dim=1), x[:, mid : mid + 1]


def resample_pos_embed_mid_cls(pos_embed, new_size, old_size, interpolation="bicubic", antialias=True):
    """Resample a (1, M+1, D) pos_embed with its class slot at M//2 to another patch grid: the M grid
    entries are interpolated as an image, the class entry is carried over to the new middle M'//2."""
    new_size, old_size = tuple(new_size), tuple(old_size)
    if new_size == old_size:
        return pos_embed
    grid, cls = split_mid_cls(pos_embed)
    grid = resample_abs_pos_embed(
        grid, list(new_size), list(old_size), num_prefix_tokens=0, interpolation=interpolation,
        antialias=antialias,
    )
    return insert_mid_cls(grid, cls)
