"""Vision Mamba (Vim): a plain stack of bidirectional Mamba blocks with a middle class token.

Zhu et al., "Vision Mamba: Efficient Visual Representation Learning with Bidirectional State Space Model",
ICML 2024 (arXiv 2401.09417). Spec: /work/shared/specs/plain_family.md §1.
official: hustvl/Vim : vim/models_mamba.py (state-dict keys and init are kept identical).

Differences from the official model (none change the released computation or keys): runs on CPU and
any backend of ``selective_scan``; the bidirectional path is also the slow/eager path; ``img_size=``
builds at another resolution and ``dynamic_img_size=True`` resamples pos_embed per input, both
keeping the middle class slot out of the interpolation (the official fine-tune script does not).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from timm.layers import DropPath, lecun_normal_, resample_patch_embed, trunc_normal_
from timm.models import build_model_with_cfg, checkpoint, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices

from ..layers import PatchEmbed, RMSNorm, VimBlock, insert_mid_cls, resample_pos_embed_mid_cls, split_mid_cls

__all__ = ["VisionMamba", "checkpoint_filter_fn", "resample_pos_embed_mid_cls"]


class VisionMamba(nn.Module):
    """Vim: patchify -> insert cls token at M//2 -> + pos_embed -> depth x VimBlock -> add&RMSNorm -> head.

    The readout is the normed token at the class position (``global_pool='token'``); ``'avg'`` averages
    the patch tokens instead. ``drop_path_rate`` follows the official schedule (§1.4): block i gets
    ``[0] + linspace(0, rate, depth)`` at index i, and a DropPath of the full rate precedes ``norm_f``.
    """

    def __init__(
        self,
        img_size=224,
        patch_size=16,
        stride=None,
        in_chans=3,
        num_classes=1000,
        global_pool="token",
        embed_dim=192,
        depth=24,
        d_state=16,
        d_conv=4,
        expand=2,
        drop_rate=0.0,
        drop_path_rate=0.0,
        norm_eps=1e-5,
        divide_out=True,
        dynamic_img_size=False,
        backend=None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        assert global_pool in ("token", "avg", "")
        dd = dict(device=device, dtype=dtype)
        stride = patch_size if stride is None else stride
        self.num_classes, self.global_pool = num_classes, global_pool
        self.num_features = self.head_hidden_size = self.embed_dim = embed_dim
        self.dynamic_img_size = dynamic_img_size
        self.grad_checkpointing = False

        self.patch_embed = PatchEmbed(img_size, patch_size, stride, in_chans, embed_dim, **dd)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim, **dd))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, embed_dim, **dd))
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = [0.0] + torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()  # official: inter_dpr
        self.layers = nn.ModuleList([
            VimBlock(embed_dim, d_state=d_state, d_conv=d_conv, expand=expand, drop_path=dpr[i],
                     norm_eps=norm_eps, divide_out=divide_out, backend=backend, **dd)
            for i in range(depth)
        ])
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.norm_f = RMSNorm(embed_dim, eps=norm_eps, **dd)
        self.head = nn.Linear(embed_dim, num_classes, **dd) if num_classes > 0 else nn.Identity()
        r = self.patch_embed.stride[0]
        self.feature_info = [dict(module=f"layers.{i}", num_chs=embed_dim, reduction=r) for i in range(depth)]
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """segm_init_weights on patch_embed/head, then Mamba's _init_weights on everything.

        official: hustvl/Vim : vim/models_mamba.py
        """
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        lecun_normal_(self.patch_embed.proj.weight)
        nn.init.zeros_(self.patch_embed.proj.bias)
        if isinstance(self.head, nn.Linear):
            trunc_normal_(self.head.weight, std=0.02)
        for m in self.modules():  # every Linear bias -> 0 unless marked; this also zeroes dt_proj_b.bias
            if isinstance(m, nn.Linear) and m.bias is not None and not getattr(m.bias, "_no_reinit", False):
                nn.init.zeros_(m.bias)
        for blk in self.layers:  # GPT-2 style: kaiming-uniform(a=sqrt 5) / sqrt(n_layer) on out_proj
            w = blk.mixer.out_proj.weight
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
            w /= math.sqrt(len(self.layers))

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """pos_embed, cls_token and the params marked ``_no_weight_decay`` (A_log, A_b_log, D, D_b)."""
        marked = {n for n, p in self.named_parameters() if getattr(p, "_no_weight_decay", False)}
        return {"pos_embed", "cls_token"} | marked

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(stem=r"^cls_token|^pos_embed|^patch_embed",
                    blocks=[(r"^layers\.(\d+)", None), (r"^norm_f", (99999,))])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            assert global_pool in ("token", "avg", "")
            self.global_pool = global_pool
        dd = dict(device=self.cls_token.device, dtype=self.cls_token.dtype)
        self.head = nn.Linear(self.embed_dim, num_classes, **dd) if num_classes > 0 else nn.Identity()

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patchify, insert the class token at M//2, add pos_embed. Returns tokens and the patch grid."""
        x = self.patch_embed(x)
        grid = (x.shape[-2], x.shape[-1])
        pos = self.pos_embed
        if grid != self.patch_embed.grid_size:
            if not self.dynamic_img_size:
                raise ValueError(f"VisionMamba: patch grid {grid} != {self.patch_embed.grid_size}; "
                                 "build with img_size=... or dynamic_img_size=True")
            pos = resample_pos_embed_mid_cls(pos, grid, self.patch_embed.grid_size)
        x = insert_mid_cls(x.flatten(2).transpose(1, 2), self.cls_token)
        return self.pos_drop(x + pos.to(x.dtype)), grid

    def _block(self, blk, hidden, residual):
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint(blk, hidden, residual)
        return blk(hidden, residual)

    def _final_norm(self, hidden, residual, drop: bool = True) -> torch.Tensor:
        """residual + DropPath(hidden) -> norm_f (in hidden's dtype); without norm_f just the sum."""
        if drop:
            hidden = self.drop_path(hidden)
        if isinstance(self.norm_f, RMSNorm):
            return self.norm_f(hidden, residual)[0]
        return (residual + hidden).to(hidden.dtype)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> normed tokens (B, M+1, D), class token at index M//2."""
        hidden, _ = self._embed(x)
        residual = None
        for blk in self.layers:
            hidden, residual = self._block(blk, hidden, residual)
        return self._final_norm(hidden, residual)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "token":
            x = x[:, (x.shape[1] - 1) // 2]
        elif self.global_pool == "avg":
            x = split_mid_cls(x)[0].mean(dim=1)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        return_prefix_tokens: bool = False,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ):
        """Per-block features like timm ViTs: the residual stream after block i (residual + mixer output),
        normed by ``norm_f`` if ``norm``; class token removed; NCHW maps (or NLC tokens).

        With ``norm=True`` the last block's intermediate equals ``forward_features`` minus the class token.
        """
        assert output_fmt in ("NCHW", "NLC"), "output_fmt must be NCHW or NLC"
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        hidden, (gh, gw) = self._embed(x)
        residual = None
        layers = self.layers[: max_index + 1] if stop_early else self.layers
        intermediates, prefix = [], []
        for i, blk in enumerate(layers):
            hidden, residual = self._block(blk, hidden, residual)
            if i in take_indices:
                if norm:
                    y = self._final_norm(hidden, residual, drop=False)
                else:
                    y = (residual + hidden).to(hidden.dtype)
                y, cls = split_mid_cls(y)
                if output_fmt == "NCHW":
                    y = y.reshape(y.shape[0], gh, gw, -1).permute(0, 3, 1, 2).contiguous()
                intermediates.append(y)
                prefix.append(cls)
        if return_prefix_tokens:
            intermediates = list(zip(intermediates, prefix))
        if intermediates_only:
            return intermediates
        return self._final_norm(hidden, residual), intermediates

    def prune_intermediate_layers(self, indices=1, prune_norm=False, prune_head=True) -> list[int]:
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        self.layers = self.layers[: max_index + 1]
        if prune_norm:
            self.norm_f = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices


def checkpoint_filter_fn(state_dict: dict, model: VisionMamba) -> dict:
    """Official Vim checkpoints (or ours) -> this model's state dict.

    Unwraps a training checkpoint ({'model': ..., 'model_ema': ..., 'optimizer': ...}, 'model' preferred)
    and a 'module.' prefix; drops only keys that are safe to drop (RoPE frequency buffers, which released
    models do not use, and the head when the model has none); resamples pos_embed to the model's grid
    keeping the middle class slot (not index 0) and the patch kernel if its size differs. Other keys
    pass through so that ``load_state_dict(strict=True)`` reports real mismatches.
    """
    for wrapper in ("model", "model_ema", "state_dict"):
        if wrapper in state_dict and isinstance(state_dict[wrapper], dict):
            state_dict = state_dict[wrapper]
            break
    own = model.state_dict()
    out = {}
    for k, v in state_dict.items():
        k = k.removeprefix("module.")
        if k.startswith("rope.") or (k.startswith("head.") and k not in own):
            continue
        if k == "pos_embed" and k in own and v.shape != own[k].shape:
            side = math.isqrt(v.shape[1] - 1)
            if side * side != v.shape[1] - 1:
                raise ValueError(f"checkpoint_filter_fn: pos_embed {tuple(v.shape)} is not square grid + cls")
            v = resample_pos_embed_mid_cls(v, model.patch_embed.grid_size, (side, side))
        elif k == "patch_embed.proj.weight" and k in own and v.shape[-2:] != own[k].shape[-2:]:
            v = resample_patch_embed(v, list(own[k].shape[-2:]), interpolation="bicubic", antialias=True)
        out[k] = v
    return out


def load_official_checkpoint(path) -> dict:
    """Read an official hustvl/Vim ``.pth`` without running pickled code.

    The released files are whole training checkpoints that also pickle the ``argparse.Namespace`` of the
    run, which plain ``torch.load(weights_only=True)`` refuses; that one class (a plain attribute holder) is
    allowed, nothing else. Pass the result to :func:`checkpoint_filter_fn`.
    """
    import argparse

    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


def _cfg(url: str = "", **kwargs) -> dict:
    return {
        "url": url, "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": None,
        "crop_pct": 0.875, "interpolation": "bicubic",
        "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
        "first_conv": "patch_embed.proj", "classifier": "head", "license": "apache-2.0",
        "paper_ids": "arXiv:2401.09417", "origin_url": "https://github.com/hustvl/Vim", **kwargs,
    }


_OFFICIAL = "bimambav2_final_pool_mean_abs_pos_embed_with_"
_NOTE = "official weights (training-checkpoint pickle, use checkpoint_filter_fn): huggingface.co/hustvl/Vim-"
default_cfgs = generate_default_cfgs({
    "vim_tiny_patch16_224": _cfg(notes=(_NOTE + "tiny-midclstok/vim_t_midclstok_76p1acc.pth",)),
    "vim_small_patch16_224": _cfg(notes=(_NOTE + "small-midclstok/vim_s_midclstok_80p5acc.pth",)),
    "vim_base_patch16_224": _cfg(notes=(_NOTE + "base-midclstok",)),
    "vim_tiny_patch16_stride8_224": _cfg(notes=(_NOTE + "tiny-midclstok/vim_t_midclstok_ft_78p3acc.pth",)),
    "vim_small_patch16_stride8_224": _cfg(notes=(_NOTE + "small-midclstok/vim_s_midclstok_ft_81p6acc.pth",)),
    f"vim_tiny_patch16_224_{_OFFICIAL}midclstok_div2": _cfg(),
    f"vim_small_patch16_224_{_OFFICIAL}midclstok_div2": _cfg(),
    f"vim_base_patch16_224_{_OFFICIAL}middle_cls_token_div2": _cfg(),
    f"vim_tiny_patch16_stride8_224_{_OFFICIAL}midclstok_div2": _cfg(),
    f"vim_small_patch16_stride8_224_{_OFFICIAL}midclstok_div2": _cfg(),
    "vim_nano_patch4_32": _cfg(input_size=(3, 32, 32), crop_pct=1.0, license=None, origin_url=None),
})


def _create_vim(variant: str, pretrained: bool = False, **kwargs) -> VisionMamba:
    out_indices = kwargs.pop("out_indices", 3)
    return build_model_with_cfg(
        VisionMamba, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls="getter"),
        **kwargs,
    )


_TI = dict(patch_size=16, embed_dim=192, depth=24)
_S = dict(patch_size=16, embed_dim=384, depth=24)
_B = dict(patch_size=16, embed_dim=768, depth=24)


@register_model
def vim_tiny_patch16_224(pretrained=False, **kwargs) -> VisionMamba:
    """Vim-Ti (7.15M params, 76.1% ImageNet top-1 with the official weights)."""
    return _create_vim("vim_tiny_patch16_224", pretrained, **dict(_TI, **kwargs))


@register_model
def vim_small_patch16_224(pretrained=False, **kwargs) -> VisionMamba:
    """Vim-S (25.8M params, 80.5%)."""
    return _create_vim("vim_small_patch16_224", pretrained, **dict(_S, **kwargs))


@register_model
def vim_base_patch16_224(pretrained=False, **kwargs) -> VisionMamba:
    """Vim-B (97.6M params, 81.9%)."""
    return _create_vim("vim_base_patch16_224", pretrained, **dict(_B, **kwargs))


@register_model
def vim_tiny_patch16_stride8_224(pretrained=False, **kwargs) -> VisionMamba:
    """Vim-Ti† (overlapping 16x16 patches at stride 8, 27x27 grid; 78.3%)."""
    return _create_vim("vim_tiny_patch16_stride8_224", pretrained, **dict(_TI, stride=8, **kwargs))


@register_model
def vim_small_patch16_stride8_224(pretrained=False, **kwargs) -> VisionMamba:
    """Vim-S† (stride 8; 81.6%)."""
    return _create_vim("vim_small_patch16_stride8_224", pretrained, **dict(_S, stride=8, **kwargs))


@register_model
def vim_tiny_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2(
    pretrained=False, **kwargs
) -> VisionMamba:
    """Official name of Vim-Ti (alias)."""
    return _create_vim(f"vim_tiny_patch16_224_{_OFFICIAL}midclstok_div2", pretrained, **dict(_TI, **kwargs))


@register_model
def vim_small_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2(
    pretrained=False, **kwargs
) -> VisionMamba:
    """Official name of Vim-S (alias)."""
    return _create_vim(f"vim_small_patch16_224_{_OFFICIAL}midclstok_div2", pretrained, **dict(_S, **kwargs))


@register_model
def vim_base_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_middle_cls_token_div2(
    pretrained=False, **kw
) -> VisionMamba:
    """Official name of Vim-B (alias; the official base name spells out "middle_cls_token")."""
    return _create_vim(f"vim_base_patch16_224_{_OFFICIAL}middle_cls_token_div2", pretrained, **dict(_B, **kw))


@register_model
def vim_tiny_patch16_stride8_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2(
    pretrained=False, **kw
) -> VisionMamba:
    """Official name of Vim-Ti† (alias)."""
    return _create_vim(f"vim_tiny_patch16_stride8_224_{_OFFICIAL}midclstok_div2", pretrained,
                       **dict(_TI, stride=8, **kw))


@register_model
def vim_small_patch16_stride8_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2(
    pretrained=False, **kw
) -> VisionMamba:
    """Official name of Vim-S† (alias)."""
    return _create_vim(f"vim_small_patch16_stride8_224_{_OFFICIAL}midclstok_div2", pretrained,
                       **dict(_S, stride=8, **kw))


@register_model
def vim_nano_patch4_32(pretrained=False, **kwargs) -> VisionMamba:
    """Vim-nano for 32x32 inputs: patch 4 (8x8 grid + middle cls), D=64, depth 6, N=16; 317,032 params
    with 1000 classes. The default model of ``visionssm train`` on scikit-learn digits."""
    args = dict(img_size=32, patch_size=4, embed_dim=64, depth=6, d_state=16, in_chans=3)
    return _create_vim("vim_nano_patch4_32", pretrained, **dict(args, **kwargs))
