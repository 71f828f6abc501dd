"""VSSD: a four-stage MLLA-style hierarchy of non-causal SSD blocks, softmax attention in the last stage.

Shi et al., "VSSD: Vision Mamba with Non-Causal State Space Duality" (arXiv 2407.18559).
Spec: /work/shared/specs/ssd_efficient_family.md §1.
official: YuHengsss/VSSD : classification/models/mamba2.py, mamba_util.py, configs/vssd/*.yaml
(module tree and state-dict keys kept: patch_embed, layers.{i}.blocks.{j}.{cpe1,norm1,attn,cpe2,norm2,mlp},
layers.{i}.downsample, norm, head).

Quirks of the official model that are kept: the NC-SSD weight is dt * exp(A_log) > 0 and the global state is not
normalised (layers/nc_ssd.py); the gate is linear (LayerNorm(y) * z); PatchMerging's convs have biases (also the
last one, followed by BN); the last stage's attention has no qkv bias although ``qkv_bias=True`` is passed.
Differences (none change the computation or keys): tokens are kept as (B, H, W, C) maps; any input size works
(the official classifier assumes H, W divisible by 32); attention uses ``F.scaled_dot_product_attention``.
FLOPs: the official numbers come from fvcore, which counts the NC-SSD's broadcast matmuls (B,1,N,L) @ (B,H,L,P)
as if there were one head; see tests/models/test_counts_ssd.py.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from timm.layers import DropPath, Mlp
from timm.models import build_model_with_cfg, checkpoint, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices

from ..layers.conv_norm_act import ConvNormAct
from ..layers.nc_ssd import NCSSD
from ._common import init_linear_and_norms, marked_no_weight_decay
from ._training_ckpt import load_training_checkpoint, pick_state_dict

__all__ = ["VSSD", "checkpoint_filter_fn", "load_training_checkpoint"]


def _given(dd: dict) -> dict:
    """device/dtype for timm layers only when set: timm 1.0.9 (our minimum) layers do not take them."""
    return {k: v for k, v in dd.items() if v is not None}


class Stem(nn.Module):
    """MLLA stem, /4: conv3x3 s2 BN ReLU -> x + [conv3x3 BN ReLU, conv3x3 BN] -> conv3x3 s2 (4C) BN ReLU -> 1x1 BN."""

    def __init__(self, in_chans: int, dim: int, **dd):
        super().__init__()
        half = dim // 2
        self.conv1 = ConvNormAct(in_chans, half, 3, 2, 1, act_layer=nn.ReLU, **dd)
        self.conv2 = nn.Sequential(ConvNormAct(half, half, 3, 1, 1, act_layer=nn.ReLU, **dd),
                                   ConvNormAct(half, half, 3, 1, 1, **dd))
        self.conv3 = nn.Sequential(ConvNormAct(half, dim * 4, 3, 2, 1, act_layer=nn.ReLU, **dd),
                                   ConvNormAct(dim * 4, dim, 1, **dd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv3(self.conv2(x) + x)


class PatchMerging(nn.Module):
    """MLLA downsample on (B, H, W, C): 1x1 (8C, bias) ReLU -> DW3x3 s2 (bias) ReLU -> 1x1 (2C, bias) BN."""

    def __init__(self, dim: int, ratio: float = 4.0, **dd):
        super().__init__()
        out, hid = 2 * dim, int(2 * dim * ratio)
        self.conv = nn.Sequential(
            ConvNormAct(dim, hid, 1, bias=True, norm=False, act_layer=nn.ReLU, **dd),
            ConvNormAct(hid, hid, 3, 2, 1, groups=hid, bias=True, norm=False, act_layer=nn.ReLU, **dd),
            ConvNormAct(hid, out, 1, bias=True, **dd),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class Attention(nn.Module):
    """Global softmax MHSA on (B, H, W, C); no qkv bias, no positional bias (official: StandardAttention)."""

    def __init__(self, dim: int, num_heads: int, attn_drop: float = 0.0, **dd):
        super().__init__()
        self.num_heads = num_heads
        self.to_qkv = nn.Linear(dim, dim * 3, bias=False, **dd)
        self.to_out = nn.Linear(dim, dim, **dd)
        self.attn_drop = attn_drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, _ = x.shape
        q, k, v = rearrange(self.to_qkv(x), "b h w (three nh d) -> three b nh (h w) d", three=3, nh=self.num_heads)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.to_out(rearrange(y, "b nh (h w) d -> b h w (nh d)", h=height))


class VSSDBlock(nn.Module):
    """x + DWConv(x); x + DropPath(mixer(LN(x))); x + DWConv(x); x + DropPath(MLP(LN(x))) on (B, H, W, C)."""

    def __init__(self, dim, num_heads, attn_type="ncssd", d_state=64, ssd_expand=2, ssd_ngroups=1, mlp_ratio=4.0,
                 drop=0.0, drop_path=0.0, positive_dA=True, backend=None, **dd):
        super().__init__()
        self.cpe1 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, **dd)
        self.norm1 = nn.LayerNorm(dim, **dd)
        if attn_type == "ncssd":
            self.attn = NCSSD(dim, num_heads, d_state=d_state, expand=ssd_expand, ngroups=ssd_ngroups,
                              positive_dA=positive_dA, backend=backend, **dd)
        elif attn_type == "attention":
            self.attn = Attention(dim, num_heads, attn_drop=drop, **dd)
        else:
            raise ValueError(f"VSSDBlock: attn_type must be 'ncssd' or 'attention', got {attn_type!r}")
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.cpe2 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, **dd)
        self.norm2 = nn.LayerNorm(dim, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop, **_given(dd))

    @staticmethod
    def _cpe(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        return x + conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._cpe(self.cpe1, x)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x = self._cpe(self.cpe2, x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class VSSDStage(nn.Module):
    """``depth`` blocks, then (except in the last stage) PatchMerging to twice the width (official: BasicLayer)."""

    def __init__(self, dim, depth, num_heads, attn_type, drop_path=(), downsample=True, **block_kw):
        super().__init__()
        self.grad_checkpointing = False
        dd = {k: block_kw[k] for k in ("device", "dtype") if k in block_kw}
        self.blocks = nn.ModuleList([
            VSSDBlock(dim, num_heads, attn_type, drop_path=drop_path[i] if drop_path else 0.0, **block_kw)
            for i in range(depth)
        ])
        self.downsample = PatchMerging(dim, **dd) if downsample else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (input of the next stage, this stage's output map) on (B, H, W, C)."""
        for blk in self.blocks:
            x = checkpoint(blk, x) if self.grad_checkpointing and not torch.jit.is_scripting() else blk(x)
        return (self.downsample(x) if self.downsample is not None else x), x


class VSSD(nn.Module):
    """VSSD classifier. ``forward_features`` returns the normed last map (B, H, W, C) (NHWC, like timm's Swin);
    ``forward_head`` averages it and applies ``head``."""

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        embed_dim: int = 64,
        depths: tuple[int, ...] = (2, 4, 8, 4),
        num_heads: tuple[int, ...] = (2, 4, 8, 16),
        attn_types: tuple[str, ...] = ("ncssd", "ncssd", "ncssd", "attention"),
        d_state: int = 64,
        ssd_expand: int = 2,
        ssd_ngroups: int = 1,
        mlp_ratio: float = 4.0,
        positive_dA: bool = True,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        backend: str | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if global_pool not in ("avg", ""):
            raise ValueError(f"VSSD: global_pool must be 'avg' or '', got {global_pool!r}")
        if not len(depths) == len(num_heads) == len(attn_types):
            raise ValueError(f"VSSD: depths {depths}, num_heads {num_heads}, attn_types {attn_types} differ in length")
        dd = dict(device=device, dtype=dtype)
        n = len(depths)
        dims = [embed_dim * 2**i for i in range(n)]
        self.num_classes, self.global_pool = num_classes, global_pool
        self.num_features = self.head_hidden_size = dims[-1]
        self.patch_embed = Stem(in_chans, embed_dim, **dd)
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").split(list(depths))
        block_kw = dict(d_state=d_state, ssd_expand=ssd_expand, ssd_ngroups=ssd_ngroups, mlp_ratio=mlp_ratio,
                        drop=drop_rate, positive_dA=positive_dA, backend=backend, **dd)
        self.layers = nn.ModuleList([
            VSSDStage(dims[i], depths[i], num_heads[i], attn_types[i], dpr[i].tolist(), i < n - 1, **block_kw)
            for i in range(n)
        ])
        self.feature_info = [dict(num_chs=dims[i], reduction=4 * 2**i, module=f"layers.{i}") for i in range(n)]
        self.norm = nn.LayerNorm(dims[-1], **dd)
        self.head = nn.Linear(dims[-1], num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        """official: trunc_normal(0.02) Linear (in_proj/out_proj included), zero bias; LayerNorm 1/0."""
        init_linear_and_norms(m)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """dt_bias, A_log and D of every NC-SSD (1-D, so timm's optimizer factory also skips them)."""
        return marked_no_weight_decay(self)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(stem=r"^patch_embed",
                    blocks=r"^layers\.(\d+)" if coarse else [
                        (r"^layers\.(\d+)\.blocks\.(\d+)", None),
                        (r"^layers\.(\d+)\.downsample", (99999,)),
                        (r"^norm", (99999,)),
                    ])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.layers:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise ValueError(f"VSSD: global_pool must be 'avg' or '', got {global_pool!r}")
            self.global_pool = global_pool
        self.num_classes = num_classes
        ref = next(self.parameters())
        dd = dict(device=ref.device, dtype=ref.dtype)
        self.head = nn.Linear(self.num_features, num_classes, **dd) if num_classes > 0 else nn.Identity()

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.pos_drop(self.patch_embed(x).permute(0, 2, 3, 1))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._stem(x)
        for stage in self.layers:
            x, _ = stage(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "avg":
            x = x.mean(dim=(1, 2))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ):
        """Stage outputs before the downsample (what the official detection backbone taps), NCHW or NHWC.
        ``norm=True`` applies the final LayerNorm to the last stage's map."""
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"VSSD: output_fmt must be NCHW or NHWC, got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        stages = self.layers[: max_index + 1] if stop_early else self.layers
        last = len(self.layers) - 1
        x = self._stem(x)
        intermediates = []
        for i, stage in enumerate(stages):
            x, out = stage(x)
            if i in take_indices:
                out = self.norm(out) if norm and i == last else out
                intermediates.append(out.permute(0, 3, 1, 2).contiguous() if output_fmt == "NCHW" else out)
        if intermediates_only:
            return intermediates
        return (self.norm(x) if len(stages) == last + 1 else x), intermediates

    def prune_intermediate_layers(self, indices=1, prune_norm: bool = False, prune_head: bool = True) -> list[int]:
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        self.layers = self.layers[: max_index + 1]
        self.layers[-1].downsample = None
        if prune_norm or max_index < len(self.feature_info) - 1:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices


def checkpoint_filter_fn(state_dict: dict, model: VSSD) -> dict:
    """Official VSSD checkpoints (classification or the detection/segmentation backbone) or ours -> this model.

    Unwraps a training checkpoint (of 'model' and 'model_ema' the one with the higher recorded best accuracy; the
    README's Tiny/Small/Base files are named ``*_best_ema.pth``) or {'state_dict': ...} (mmdet/mmseg) and the
    'module.' and 'backbone.' prefixes; drops the backbone's per-stage ``outnorm{i}``, decoder keys and, when the
    model has none or another size, the head; other keys pass through, so that ``load_state_dict(strict=True)``
    reports real mismatches.
    """
    state_dict = pick_state_dict(state_dict)
    own = model.state_dict()
    out = {}
    for k, v in state_dict.items():
        k = k.removeprefix("module.").removeprefix("backbone.")
        if k.startswith("outnorm") or (k.startswith("head.") and (k not in own or own[k].shape != v.shape)):
            continue
        if k.startswith(("decode_head.", "auxiliary_head.", "neck.", "rpn_head.", "roi_head.")):
            continue
        out[k] = v
    return out


def _cfg(url: str = "", **kwargs) -> dict:
    return {
        "url": url, "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7),
        "crop_pct": 0.875, "interpolation": "bicubic", "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
        "first_conv": "patch_embed.conv1.conv", "classifier": "head", "license": None,  # the repo states none
        "paper_ids": "arXiv:2407.18559", "origin_url": "https://github.com/YuHengsss/VSSD", **kwargs,
    }


_NOTE = ("official weights (training checkpoints: load_training_checkpoint, then checkpoint_filter_fn): "
         "huggingface.co/YuhengSSS/VSSD/")
default_cfgs = generate_default_cfgs({
    "vssd_micro": _cfg(notes=(_NOTE + "vssd_micro_best.pth",)),
    "vssd_tiny": _cfg(notes=(_NOTE + "vssd_tiny_best_ema.pth", _NOTE + "vssd_tiny_e300_with_mesa.pth")),
    "vssd_small": _cfg(notes=(_NOTE + "vssd_small_best_ema.pth", _NOTE + "vssd_small_e300_with_mesa.pth")),
    "vssd_base": _cfg(notes=(_NOTE + "vssd_base_best_ema.pth", _NOTE + "vssd_base_e300_with_mesa.pth")),
})


def _create_vssd(variant: str, pretrained: bool = False, **kwargs) -> VSSD:
    out_indices = kwargs.pop("out_indices", (0, 1, 2, 3))
    return build_model_with_cfg(
        VSSD, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls="getter"),
        **kwargs,
    )


@register_model
def vssd_micro(pretrained=False, **kwargs) -> VSSD:
    """VSSD-Micro: 13,512,964 params, 2.31G FLOPs (fvcore), 82.5% top-1; official drop_path_rate 0.1."""
    args = dict(embed_dim=48, depths=(2, 2, 8, 4), num_heads=(2, 4, 8, 16), d_state=48)
    return _create_vssd("vssd_micro", pretrained, **dict(args, **kwargs))


@register_model
def vssd_tiny(pretrained=False, **kwargs) -> VSSD:
    """VSSD-Tiny: 24,270,724 params, 4.48G FLOPs (fvcore), 83.6% top-1; official drop_path_rate 0.2."""
    args = dict(embed_dim=64, depths=(2, 4, 8, 4), num_heads=(2, 4, 8, 16))
    return _create_vssd("vssd_tiny", pretrained, **dict(args, **kwargs))


@register_model
def vssd_small(pretrained=False, **kwargs) -> VSSD:
    """VSSD-Small: 40,075,650 params, 7.37G FLOPs (fvcore), 84.1% top-1; official drop_path_rate 0.4."""
    args = dict(embed_dim=64, depths=(3, 4, 21, 5), num_heads=(2, 4, 8, 16))
    return _create_vssd("vssd_small", pretrained, **dict(args, **kwargs))


@register_model
def vssd_base(pretrained=False, **kwargs) -> VSSD:
    """VSSD-Base: 88,823,151 params, 16.07G FLOPs (fvcore), 84.7% top-1; official drop_path_rate 0.6."""
    args = dict(embed_dim=96, depths=(3, 4, 21, 5), num_heads=(3, 6, 12, 24))
    return _create_vssd("vssd_base", pretrained, **dict(args, **kwargs))
