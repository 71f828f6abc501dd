"""EfficientViM: a three-stage /16 network of HSM-SSD blocks with a multi-stage hidden-state fusion head.

Lee et al., "EfficientViM: Efficient Vision Mamba with Hidden State Mixer based State Space Duality",
CVPR 2025 (arXiv 2411.15241). Spec: /work/shared/specs/ssd_efficient_family.md §2.
official: mlvlab/EfficientViM : classification/models/EfficientViM.py, classification/models/utils.py
(module tree and state-dict keys kept; ``checkpoint_filter_fn`` only reshapes the LayerNorm params).
Registered as ``visionssm_efficientvim_m{1..4}``: timm registers its own port (timm/models/efficientvim.py) as
``efficientvim_m*``, with the same keys and forward contract; the tests check that both give the same logits.

Quirks of the official model that are kept, so released weights give the released accuracy:
- every sub-layer of a block is a convex interpolation ``x <- (1 - a) x + a f(x)``, ``a = sigmoid(alpha)``,
  ``alpha`` init 1e-4 (so a = 0.5 at init), not a residual sum;
- the ``bn_weight_init=0`` requested for dwconv1/dwconv2/ffn.fc2 is undone by the model-level init, which
  sets every BatchNorm weight to 1; we do the same (i.e. no zero-init);
- HSM-SSD's ``A`` is inert and ``D`` is a scalar in state space (see layers/hsm_ssd.py);
- the MSF head sums ``softmax(weights)_i * heads_i(pool(norm_i(h_i)))`` over the last block's hidden state of
  each stage plus the pooled final map.
Differences (none change the computation or keys): grids need not be square (the official classification code
takes H = W = sqrt(L); its detection copy passes H, W as we do); LayerNorms are ``nn.LayerNorm`` subclasses
with (C,) params instead of (1, C, 1[, 1]); optional ``drop_path_rate`` applies DropPath to each sub-layer's
update ``a (f(x) - x)`` and ``drop_rate`` is dropout on the pooled head inputs (both 0 by default: the official
model has neither; timm's port has both).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, LayerNorm2d, SqueezeExcite
from timm.models import build_model_with_cfg, checkpoint, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices

from ..layers.conv_norm_act import ConvNormAct
from ..layers.hsm_ssd import HSMSSD
from ._common import init_linear_and_norms, marked_no_weight_decay
from ._training_ckpt import load_training_checkpoint, pick_state_dict

__all__ = ["EfficientViM", "checkpoint_filter_fn", "load_training_checkpoint"]


def _given(dd: dict) -> dict:
    """device/dtype for timm layers only when set: timm 1.0.9 (our minimum) layers do not take them."""
    return {k: v for k, v in dd.items() if v is not None}


class LayerNorm1d(nn.LayerNorm):
    """LayerNorm over the channels of (B, C, L)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.transpose(1, 2), self.normalized_shape, self.weight, self.bias, self.eps).transpose(1, 2)


class Stem(nn.Module):
    """Four 3x3 stride-2 conv+BN (ReLU between them): 3 -> D/8 -> D/4 -> D/2 -> D, /16."""

    def __init__(self, in_chans: int, dim: int, **dd):
        super().__init__()
        chs = [in_chans, dim // 8, dim // 4, dim // 2, dim]
        self.conv = nn.Sequential(*[
            ConvNormAct(chs[i], chs[i + 1], 3, 2, 1, act_layer=nn.ReLU if i < 3 else None, **dd) for i in range(4)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class PatchMerging(nn.Module):
    """x + DW3x3BN(x) -> 1x1 (4*out) BN ReLU -> DW3x3 s2 BN ReLU -> SE(0.25) -> 1x1 out BN -> + DW3x3BN."""

    def __init__(self, in_dim: int, out_dim: int, ratio: float = 4.0, **dd):
        super().__init__()
        hid = int(out_dim * ratio)
        self.conv = nn.Sequential(
            ConvNormAct(in_dim, hid, 1, act_layer=nn.ReLU, **dd),
            ConvNormAct(hid, hid, 3, 2, 1, groups=hid, act_layer=nn.ReLU, **dd),
            SqueezeExcite(hid, 0.25, **_given(dd)),
            ConvNormAct(hid, out_dim, 1, **dd),
        )
        self.dwconv1 = ConvNormAct(in_dim, in_dim, 3, 1, 1, groups=in_dim, **dd)
        self.dwconv2 = ConvNormAct(out_dim, out_dim, 3, 1, 1, groups=out_dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dwconv1(x)
        x = self.conv(x)
        return x + self.dwconv2(x)


class FFN(nn.Module):
    def __init__(self, dim: int, hidden: int, **dd):
        super().__init__()
        self.fc1 = ConvNormAct(dim, hidden, 1, act_layer=nn.ReLU, **dd)
        self.fc2 = ConvNormAct(hidden, dim, 1, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x))


class EfficientViMBlock(nn.Module):
    """DWConv+BN, HSM-SSD(LN(x)), DWConv+BN, FFN; each mixed in as x <- x + a_k (f_k(x) - x)."""

    def __init__(self, dim, state_dim=64, mlp_ratio=4.0, ssd_expand=1.0, drop_path=0.0, backend=None, **dd):
        super().__init__()
        self.mixer = HSMSSD(dim, state_dim=state_dim, ssd_expand=ssd_expand, backend=backend, **dd)
        self.norm = LayerNorm1d(dim, eps=1e-5, **dd)
        self.dwconv1 = ConvNormAct(dim, dim, 3, 1, 1, groups=dim, **dd)
        self.dwconv2 = ConvNormAct(dim, dim, 3, 1, 1, groups=dim, **dd)
        self.ffn = FFN(dim, int(dim * mlp_ratio), **dd)
        self.alpha = nn.Parameter(torch.full((4, dim), 1e-4, **dd))  # official: named "LayerScale"
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = torch.sigmoid(self.alpha)[:, None, :, None, None]  # (4, 1, dim, 1, 1)
        x = x + self.drop_path(a[0] * (self.dwconv1(x) - x))
        y, h = self.mixer(self.norm(x.flatten(2)), x.shape[-2:])
        x = x + self.drop_path(a[1] * (y - x))
        x = x + self.drop_path(a[2] * (self.dwconv2(x) - x))
        x = x + self.drop_path(a[3] * (self.ffn(x) - x))
        return x, h


class EfficientViMStage(nn.Module):
    """``depth`` blocks, then (except in the last stage) the downsample to the next width."""

    def __init__(self, dim, out_dim, depth, state_dim, mlp_ratio=4.0, ssd_expand=1.0, drop_path=(), backend=None,
                 **dd):
        super().__init__()
        self.grad_checkpointing = False
        self.blocks = nn.ModuleList([
            EfficientViMBlock(dim, state_dim, mlp_ratio, ssd_expand, drop_path[i] if drop_path else 0.0, backend,
                              **dd)
            for i in range(depth)
        ])
        self.downsample = PatchMerging(dim, out_dim, **dd) if out_dim is not None else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (input of the next stage, this stage's output map, last block's hidden state (B, D, N))."""
        for blk in self.blocks:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x, h = checkpoint(blk, x)
            else:
                x, h = blk(x)
        return (self.downsample(x) if self.downsample is not None else x), x, h


class EfficientViM(nn.Module):
    """EfficientViM classifier with the multi-stage hidden-state fusion (MSF) head.

    Same contract as timm's port (timm/models/efficientvim.py), so the two are interchangeable:
    ``forward_features`` returns the four MSF inputs as normed NCL tensors ``[norm_i(h_i) (B, D_i, N_i) for each
    stage] + [norm(final map) (B, D_last, H*W)]``; ``forward_head`` pools each over its last axis and fuses the
    four heads (``pre_logits=True``: the pooled features concatenated, ``num_features`` wide).
    ``distillation=True`` adds the parallel ``heads_dist``/``weights_dist`` of the distilled checkpoints; the
    two predictions are averaged (the official eval path) unless ``set_distilled_training(True)`` in training.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        embed_dim: tuple[int, ...] = (128, 256, 512),
        depths: tuple[int, ...] = (2, 2, 2),
        state_dim: tuple[int, ...] = (49, 25, 9),
        mlp_ratio: float = 4.0,
        ssd_expand: float = 1.0,
        distillation: bool = False,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        backend: str | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if global_pool not in ("avg", ""):
            raise ValueError(f"EfficientViM: global_pool must be 'avg' or '', got {global_pool!r}")
        if not len(embed_dim) == len(depths) == len(state_dim):
            raise ValueError(f"EfficientViM: embed_dim {embed_dim}, depths {depths}, state_dim {state_dim} differ "
                             "in length")
        dd = dict(device=device, dtype=dtype)
        self.num_classes, self.global_pool, self.distillation = num_classes, global_pool, distillation
        self.distilled_training = False
        self.embed_dim = tuple(embed_dim)
        self.num_features = self.head_hidden_size = sum(embed_dim) + embed_dim[-1]
        self.head_drop = nn.Dropout(drop_rate)
        self.patch_embed = Stem(in_chans, embed_dim[0], **dd)
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").split(list(depths))
        n = len(depths)
        self.stages = nn.ModuleList([
            EfficientViMStage(embed_dim[i], embed_dim[i + 1] if i < n - 1 else None, depths[i], state_dim[i],
                              mlp_ratio, ssd_expand, dpr[i].tolist(), backend, **dd)
            for i in range(n)
        ])
        self.feature_info = [dict(num_chs=embed_dim[i], reduction=16 * 2**i, module=f"stages.{i}") for i in range(n)]
        self.weights = nn.Parameter(torch.ones(n + 1, **dd))
        self.norm = nn.ModuleList([LayerNorm1d(d, eps=1e-5, **dd) for d in embed_dim] +
                                  [LayerNorm2d(embed_dim[-1], eps=1e-5, **_given(dd))])
        self.heads = self._make_heads(num_classes, **dd)
        if distillation:
            self.weights_dist = nn.Parameter(torch.ones(n + 1, **dd))
            self.heads_dist = self._make_heads(num_classes, **dd)
        self.apply(self._init_weights)

    def _make_heads(self, num_classes: int, **dd) -> nn.ModuleList:
        dims = list(self.embed_dim) + [self.embed_dim[-1]]
        return nn.ModuleList([nn.Linear(d, num_classes, **dd) if num_classes > 0 else nn.Identity() for d in dims])

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        """official: trunc_normal(0.02) Linear, zero bias; norms (BN included) weight 1, bias 0."""
        init_linear_and_norms(m, (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d))

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return marked_no_weight_decay(self)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(stem=r"^patch_embed",
                    blocks=r"^stages\.(\d+)" if coarse else [
                        (r"^stages\.(\d+)\.blocks\.(\d+)", None),
                        (r"^stages\.(\d+)\.downsample", (99999,)),
                        (r"^norm", (99999,)),
                    ])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def set_distilled_training(self, enable: bool = True) -> None:
        self.distilled_training = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.heads

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise ValueError(f"EfficientViM: global_pool must be 'avg' or '', got {global_pool!r}")
            self.global_pool = global_pool
        self.num_classes = num_classes
        dd = dict(device=self.weights.device, dtype=self.weights.dtype)
        self.heads = self._make_heads(num_classes, **dd)
        if self.distillation:
            self.heads_dist = self._make_heads(num_classes, **dd)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        feats = []
        for stage, norm in zip(self.stages, self.norm):
            x, _, h = stage(x)
            feats.append(norm(h))
        return feats + [self.norm[-1](x).flatten(2)]

    def forward_head(self, feats: list[torch.Tensor], pre_logits: bool = False):
        if not self.global_pool:
            return feats
        pooled = [self.head_drop(t.mean(-1)) for t in feats]
        if pre_logits or self.num_classes == 0:
            return torch.cat(pooled, dim=1)
        out = self._fuse(pooled, self.weights, self.heads)
        if not self.distillation:
            return out
        out_dist = self._fuse(pooled, self.weights_dist, self.heads_dist)
        if self.distilled_training and self.training:
            return out, out_dist
        return (out + out_dist) / 2  # official: eval averages the two

    @staticmethod
    def _fuse(pooled: list[torch.Tensor], weights: torch.Tensor, heads: nn.ModuleList) -> torch.Tensor:
        w = weights.softmax(-1)
        return torch.stack([w[i] * head(p) for i, (head, p) in enumerate(zip(heads, pooled))]).sum(0)

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
        """Stage output maps (before the downsample), NCHW. ``norm=True`` applies the final LayerNorm2d to the
        last stage's map. Returns ``(forward_features output, intermediates)`` unless ``intermediates_only``
        (with ``stop_early`` the hidden states of the stages run so far, then the last map)."""
        if output_fmt != "NCHW":
            raise ValueError(f"EfficientViM: output_fmt must be NCHW, got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        stages = self.stages[: max_index + 1] if stop_early else self.stages
        last = len(self.stages) - 1
        x = self.patch_embed(x)
        intermediates, feats = [], []
        for i, stage in enumerate(stages):
            x, out, h = stage(x)
            feats.append(self.norm[i](h))
            if i in take_indices:
                intermediates.append(self.norm[-1](out) if norm and i == last else out)
        if intermediates_only:
            return intermediates
        return feats + [self.norm[-1](out).flatten(2) if len(stages) == last + 1 else out.flatten(2)], intermediates

    def prune_intermediate_layers(self, indices=1, prune_norm: bool = False, prune_head: bool = True) -> list[int]:
        """Keep the stages up to the last requested one (the MSF head needs all stages, so the head goes too)."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        if max_index + 1 < len(self.stages) and not prune_head:
            raise ValueError("EfficientViM: pruning stages needs prune_head=True (the MSF head reads every stage)")
        self.stages = self.stages[: max_index + 1]
        self.stages[-1].downsample = None
        if prune_norm:
            self.norm = nn.ModuleList([nn.Identity() for _ in self.norm])
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices


def checkpoint_filter_fn(state_dict: dict, model: EfficientViM) -> dict:
    """Official EfficientViM checkpoints, timm's ``efficientvim_*`` weights (same keys) or ours -> this model.

    Unwraps a training checkpoint ('model_ema' unless the recorded accuracies favour 'model'; per the timm port's
    note the EMA weights give the paper's top-1) and a 'module.' prefix; reshapes the official LayerNorm1D/2D
    params (1, C, 1[, 1]) to (C,); drops heads the model does not have (classifier reset, or distillation heads on
    a plain model). Other keys pass through so that ``load_state_dict(strict=True)`` reports real mismatches.
    """
    state_dict = pick_state_dict(state_dict, prefer_ema=True)
    own = model.state_dict()
    out = {}
    for k, v in state_dict.items():
        k = k.removeprefix("module.")
        if k.startswith(("heads", "weights_dist")) and (k not in own or own[k].shape != v.shape):
            continue
        if k in own and v.dim() > 1 and own[k].dim() == 1 and v.numel() == own[k].numel():
            v = v.reshape(own[k].shape)  # official LayerNorm1D/2D params
        out[k] = v
    return out


def _cfg(url: str = "", **kwargs) -> dict:
    return {
        "url": url, "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": None,
        "crop_pct": 0.875, "interpolation": "bicubic", "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
        "first_conv": "patch_embed.conv.0.conv", "classifier": ("heads.0", "heads.1", "heads.2", "heads.3"),
        "license": "mit", "paper_ids": "arXiv:2411.15241", "origin_url": "https://github.com/mlvlab/EfficientViM",
        **kwargs,
    }


# timm (1.0.31 here) registers its own port as ``efficientvim_m*``; ours are prefixed so neither overwrites the other.
# The keys match timm's port, so its Hub weights load through checkpoint_filter_fn (not tested here: no network).
def _hub(tag: str, **kwargs) -> dict:
    return _cfg(hf_hub_id=f"timm/{tag}", **kwargs)


default_cfgs = generate_default_cfgs({
    "visionssm_efficientvim_m1.e300_in1k": _hub("efficientvim_m1.e300_in1k"),
    "visionssm_efficientvim_m1.e450_in1k": _hub("efficientvim_m1.e450_in1k"),
    "visionssm_efficientvim_m2.e300_in1k": _hub("efficientvim_m2.e300_in1k"),
    "visionssm_efficientvim_m2.e450_in1k": _hub("efficientvim_m2.e450_in1k"),
    "visionssm_efficientvim_m3.e300_in1k": _hub("efficientvim_m3.e300_in1k"),
    "visionssm_efficientvim_m3.e450_in1k": _hub("efficientvim_m3.e450_in1k"),
    "visionssm_efficientvim_m4.e300_in1k": _hub("efficientvim_m4.e300_in1k", input_size=(3, 256, 256)),
    "visionssm_efficientvim_m4.e450_in1k": _hub("efficientvim_m4.e450_in1k", input_size=(3, 256, 256)),
})


def _create_efficientvim(variant: str, pretrained: bool = False, **kwargs) -> EfficientViM:
    out_indices = kwargs.pop("out_indices", (0, 1, 2))
    return build_model_with_cfg(
        EfficientViM, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls="getter"),
        **kwargs,
    )


@register_model
def visionssm_efficientvim_m1(pretrained=False, **kwargs) -> EfficientViM:
    """EfficientViM-M1: 6,679,458 params, 239M FLOPs (fvcore) at 224; 72.9% top-1 (300 ep)."""
    args = dict(embed_dim=(128, 192, 320), depths=(2, 2, 2), state_dim=(49, 25, 9))
    return _create_efficientvim("visionssm_efficientvim_m1", pretrained, **dict(args, **kwargs))


@register_model
def visionssm_efficientvim_m2(pretrained=False, **kwargs) -> EfficientViM:
    """EfficientViM-M2: 13,903,842 params, 355M FLOPs at 224; 75.4%."""
    args = dict(embed_dim=(128, 256, 512), depths=(2, 2, 2), state_dim=(49, 25, 9))
    return _create_efficientvim("visionssm_efficientvim_m2", pretrained, **dict(args, **kwargs))


@register_model
def visionssm_efficientvim_m3(pretrained=False, **kwargs) -> EfficientViM:
    """EfficientViM-M3: 16,604,174 params, 656M FLOPs at 224; 77.6%."""
    args = dict(embed_dim=(224, 320, 512), depths=(2, 2, 2), state_dim=(49, 25, 9))
    return _create_efficientvim("visionssm_efficientvim_m3", pretrained, **dict(args, **kwargs))


@register_model
def visionssm_efficientvim_m4(pretrained=False, **kwargs) -> EfficientViM:
    """EfficientViM-M4 (256 input): 19,606,505 params, 1111M FLOPs at 256; 79.4%."""
    args = dict(embed_dim=(224, 320, 512), depths=(3, 4, 2), state_dim=(64, 32, 16))
    return _create_efficientvim("visionssm_efficientvim_m4", pretrained, **dict(args, **kwargs))
