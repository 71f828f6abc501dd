"""VMamba: a four-stage hierarchy of VSS blocks built on the SS2D cross-scan.

Liu et al., "VMamba: Visual State Space Model", NeurIPS 2024 (arXiv 2401.10166).
Spec: /work/shared/specs/hierarchical_family.md §1.
official: MzeroMiko/VMamba classification/models/vmamba.py (VSSM and the registered builders); state-dict
keys and shapes are the official ones (v2 checkpoints load as they are, v0 ones through checkpoint_filter_fn).

All models keep NCHW maps throughout (the official channel-first layout; Linear2d/LayerNorm2d hold the same
weights as the channel-last nn.Linear/nn.LayerNorm). ``HierarchicalSSM`` is the shared skeleton (stem, four
stages of blocks each ending in a downsample, classifier norm + head) that MSVMamba and EfficientVMamba
reuse with their own blocks.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
import torch.nn as nn
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices

from ..layers.layer_norm2d import LayerNorm2d
from ..layers.patch_merging import PatchMerging2d
from ..layers.vss_block import VSSBlock
from ._common import init_linear_and_norms, marked_no_weight_decay

__all__ = ["HierarchicalSSM", "VMamba", "checkpoint_filter_fn", "unwrap_checkpoint"]


class Stage(nn.Module):
    """blocks, then the downsample to the next stage (official placement: ``layers.{i}.downsample``)."""

    def __init__(self, blocks: list[nn.Module], downsample: nn.Module):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.downsample = downsample
        self.grad_checkpointing = False

    def forward_blocks(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.forward_blocks(x))


def make_stem(kind: str, in_chans: int, dim: int, norm_eps: float) -> nn.Sequential:
    """v1: 4x4/4 conv -> LN.  v2: 3x3/2 conv -> LN -> GELU -> 3x3/2 conv -> LN.

    The Identity slots stand where the official code permutes to channel-last, so that the parameter
    indices (patch_embed.0/2 and patch_embed.0/2/5/7) match the official checkpoints.
    """
    if kind == "v1":
        return nn.Sequential(nn.Conv2d(in_chans, dim, 4, 4), nn.Identity(), LayerNorm2d(dim, eps=norm_eps))
    if kind == "v2":
        return nn.Sequential(
            nn.Conv2d(in_chans, dim // 2, 3, 2, 1), nn.Identity(), LayerNorm2d(dim // 2, eps=norm_eps),
            nn.Identity(), nn.GELU(),
            nn.Conv2d(dim // 2, dim, 3, 2, 1), nn.Identity(), LayerNorm2d(dim, eps=norm_eps),
        )
    raise ValueError(f"stem must be 'v1' or 'v2', got {kind!r}")


def make_downsample(kind: str, dim: int, out_dim: int, norm_eps: float) -> nn.Module:
    """v1: Swin patch merging (keys norm, reduction).  v3: 3x3/2 conv -> LN (keys 1, 3)."""
    if kind == "v1":
        return PatchMerging2d(dim, out_dim, norm_eps=norm_eps)
    if kind == "v3":
        return nn.Sequential(nn.Identity(), nn.Conv2d(dim, out_dim, 3, 2, 1), nn.Identity(),
                             LayerNorm2d(out_dim, eps=norm_eps))
    raise ValueError(f"downsample must be 'v1' or 'v3', got {kind!r}")


class HierarchicalSSM(nn.Module):
    """Stem (stride 4) -> 4 stages (strides 4/8/16/32) -> classifier.norm -> avg pool -> classifier.head.

    ``block_fn(stage, dim, drop_path)`` builds one block; drop path grows linearly from 0 to
    ``drop_path_rate`` over all blocks (official schedule).
    """

    def __init__(
        self,
        block_fn: Callable[[int, int, float], nn.Module],
        depths=(2, 2, 9, 2),
        dims=96,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        stem: str = "v1",
        downsample: str = "v1",
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        if global_pool not in ("avg", ""):
            raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
        dims = [int(dims * 2**i) for i in range(len(depths))] if isinstance(dims, int) else list(dims)
        if len(dims) != len(depths):
            raise ValueError(f"dims {dims} and depths {tuple(depths)} differ in length")
        self.num_classes, self.global_pool, self.dims = num_classes, global_pool, dims
        self.num_features = self.head_hidden_size = dims[-1]
        self.patch_embed = make_stem(stem, in_chans, dims[0], norm_eps)
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            blocks = [block_fn(i, dims[i], dpr[start + j]) for j in range(depth)]
            down = make_downsample(downsample, dims[i], dims[i + 1], norm_eps) if i + 1 < len(dims) else nn.Identity()
            self.layers.append(Stage(blocks, down))
        self.feature_info = [dict(num_chs=d, reduction=4 * 2**i, module=f"layers.{i}") for i, d in enumerate(dims)]
        self.head_drop = nn.Dropout(drop_rate)
        self.classifier = nn.ModuleDict(dict(
            norm=LayerNorm2d(self.num_features, eps=norm_eps),
            head=nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity(),
        ))
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        """official: VSSM._init_weights (Linear, incl. Linear2d: trunc_normal 0.02, zero bias; LayerNorm 1/0).
        Stacked scan parameters and convolutions keep their construction-time init."""
        init_linear_and_norms(m)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """The parameters marked ``_no_weight_decay`` (A_logs and Ds of every SS2D)."""
        return marked_no_weight_decay(self)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r"^patch_embed",
            blocks=r"^layers\.(\d+)" if coarse else [
                (r"^layers\.(\d+)\.blocks\.(\d+)", None),
                (r"^layers\.(\d+)\.downsample", (0,)),
                (r"^classifier\.norm", (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.layers:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.classifier.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
            self.global_pool = global_pool
        ref = next(self.parameters())
        self.classifier.head = (nn.Linear(self.num_features, num_classes, device=ref.device, dtype=ref.dtype)
                                if num_classes > 0 else nn.Identity())

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> normed last-stage map (B, num_features, H/32, W/32)."""
        x = self.patch_embed(x)
        for stage in self.layers:
            x = stage(x)
        return self.classifier.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "avg":
            x = x.mean(dim=(2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.classifier.head(x)

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
        """Stage outputs before each downsample (strides 4/8/16/32, NCHW; ``NHWC`` also accepted).

        ``norm=True`` applies classifier.norm to the last stage's map (the only one it fits).
        """
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        last = len(self.dims) - 1  # classifier.norm fits the last stage only
        stages = self.layers[: max_index + 1] if stop_early else self.layers
        x = self.patch_embed(x)
        intermediates = []
        for i, stage in enumerate(stages):
            x = stage.forward_blocks(x)
            if i in take_indices:
                y = self.classifier.norm(x) if (norm and i == last) else x
                intermediates.append(y.permute(0, 2, 3, 1) if output_fmt == "NHWC" else y)
            x = stage.downsample(x)
        if intermediates_only:
            return intermediates
        return self.classifier.norm(x), intermediates

    def prune_intermediate_layers(self, indices=1, prune_norm: bool = False, prune_head: bool = True) -> list[int]:
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        self.layers = self.layers[: max_index + 1]
        if max_index < len(self.dims) - 1:
            self.layers[-1].downsample = nn.Identity()
        if prune_norm:
            self.classifier.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices


class VMamba(HierarchicalSSM):
    """VMamba. Defaults are VMamba-T[s1l8] (v2); the vanilla (v0) models set
    ``d_state=16, ssm_ratio=2, conv_bias=True, gate=True, force_fp32=True, mlp_ratio=0, stem/downsample v1``.
    """

    def __init__(
        self,
        img_size=None,  # accepted for timm API compatibility: the model works at any resolution
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        depths=(2, 2, 8, 2),
        dims=96,
        d_state: int = 1,
        ssm_ratio: float = 1.0,
        dt_rank="auto",
        d_conv: int = 3,
        conv_bias: bool = False,
        gate: bool = False,
        force_fp32: bool = False,
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        stem: str = "v2",
        downsample: str = "v3",
        norm_eps: float = 1e-5,
        backend: str | None = None,
    ):
        def block(stage: int, dim: int, drop_path: float) -> nn.Module:
            return VSSBlock(dim, drop_path, mlp_ratio=mlp_ratio, norm_eps=norm_eps, d_state=d_state,
                            ssm_ratio=ssm_ratio, dt_rank=dt_rank, d_conv=d_conv, conv_bias=conv_bias, gate=gate,
                            routes="cross", force_fp32=force_fp32, backend=backend)

        super().__init__(block, depths=depths, dims=dims, in_chans=in_chans, num_classes=num_classes,
                         global_pool=global_pool, drop_rate=drop_rate, drop_path_rate=drop_path_rate, stem=stem,
                         downsample=downsample, norm_eps=norm_eps)


def unwrap_checkpoint(state_dict: dict, wrappers=("model", "model_ema", "state_dict")) -> dict:
    """A training checkpoint's weights ('model' first) with DataParallel/DDP 'module.' prefixes removed."""
    for wrapper in wrappers:
        if wrapper in state_dict and isinstance(state_dict[wrapper], dict):
            state_dict = state_dict[wrapper]
            break
    out = {}
    for k, v in state_dict.items():
        while k.startswith("module."):
            k = k[len("module."):]
        out[k] = v
    return out


# official v0 (January 2024) names -> current names; MzeroMiko/VMamba classification/models/vmamba.py
# VSSM._load_from_state_dict, plus the one-file /vmamba.py names of the PatchMerging parts.
_V0_RENAMES = [
    (r"^patch_embed\.proj\.", "patch_embed.0."),
    (r"^patch_embed\.norm\.", "patch_embed.2."),
    (r"\.blocks\.(\d+)\.ln_1\.", r".blocks.\1.norm."),
    (r"\.blocks\.(\d+)\.self_attention\.", r".blocks.\1.op."),
    (r"^norm\.", "classifier.norm."),
    (r"^head\.", "classifier.head."),
]
_ONE_FILE_RENAMES = [  # only applied when the target name exists in the model
    (r"\.downsample\.1\.", ".downsample.norm."),
    (r"\.downsample\.2\.", ".downsample.reduction."),
    (r"\.op\.x_proj\.weight$", ".op.x_proj_weight"),
    (r"\.op\.dt_projs\.weight$", ".op.dt_projs_weight"),
    (r"\.op\.dt_projs\.bias$", ".op.dt_projs_bias"),
]


def checkpoint_filter_fn(state_dict: dict, model: nn.Module) -> dict:
    """Official VMamba checkpoints (v2, v0 with its old names, one-file names) or ours -> this model's keys.

    Unwraps {'model': ...}; renames the v0 keys; reshapes grouped-Linear (one-file) x_proj/dt_projs weights and
    4-D 1x1 conv weights to our stacked / 2-D shapes; drops the classifier head when the model has none.
    Other keys pass through so ``load_state_dict(strict=True)`` reports real mismatches.
    """
    state_dict = unwrap_checkpoint(state_dict)
    own = model.state_dict()
    out = {}
    for k, v in state_dict.items():
        for pat, rep in _V0_RENAMES:
            k = re.sub(pat, rep, k)
        if k not in own:
            for pat, rep in _ONE_FILE_RENAMES:
                cand = re.sub(pat, rep, k)
                if cand != k and cand in own:
                    k = cand
                    break
        if k.startswith("classifier.head.") and k not in own:
            continue
        if k in own and v.shape != own[k].shape and v.numel() == own[k].numel():
            v = v.reshape(own[k].shape)
        out[k] = v
    return out


def _cfg(url: str = "", **kwargs) -> dict:
    return {
        "url": url, "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7),
        "crop_pct": 0.875, "interpolation": "bicubic", "fixed_input_size": False,
        "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
        "first_conv": "patch_embed.0", "classifier": "classifier.head", "license": "mit",
        "paper_ids": "arXiv:2401.10166", "paper_name": "VMamba: Visual State Space Model",
        "origin_url": "https://github.com/MzeroMiko/VMamba", **kwargs,
    }


_REL = ("official weights (training checkpoint, use checkpoint_filter_fn): "
        "github.com/MzeroMiko/VMamba/releases/download/")
default_cfgs = generate_default_cfgs({
    "vanilla_vmamba_tiny": _cfg(notes=(_REL + "%23v0cls/vssmtiny_dp01_ckpt_epoch_292.pth",)),
    "vanilla_vmamba_small": _cfg(notes=(_REL + "%23v0cls/vssmsmall_dp03_ckpt_epoch_238.pth",)),
    "vanilla_vmamba_base": _cfg(notes=(_REL + "%23v0cls/vssmbase_dp06_ckpt_epoch_241.pth",)),
    "vmamba_tiny_s1l8": _cfg(notes=(_REL + "%23v2cls/vssm1_tiny_0230s_ckpt_epoch_264.pth",)),
    "vmamba_small_s2l15": _cfg(notes=(_REL + "%23v2cls/vssm_small_0229_ckpt_epoch_222.pth",)),
    "vmamba_base_s2l15": _cfg(notes=(_REL + "%23v2cls/vssm_base_0229_ckpt_epoch_237.pth",)),
})


def _create_vmamba(variant: str, pretrained: bool = False, **kwargs) -> VMamba:
    out_indices = kwargs.pop("out_indices", (0, 1, 2, 3))
    return build_model_with_cfg(
        VMamba, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls="getter"),
        **kwargs,
    )


# official builders: MzeroMiko/VMamba classification/models/vmamba.py (vanilla_vmamba_*, vmamba_*_s*l*)
_V0 = dict(d_state=16, ssm_ratio=2.0, conv_bias=True, gate=True, force_fp32=True, mlp_ratio=0.0,
           stem="v1", downsample="v1")
_V2 = dict(d_state=1, conv_bias=False, gate=False, force_fp32=False, mlp_ratio=4.0, stem="v2", downsample="v3")


@register_model
def vanilla_vmamba_tiny(pretrained=False, **kwargs) -> VMamba:
    """Vanilla-VMamba-T (v0): 22.9M params, 82.2% ImageNet top-1 with the official weights."""
    args = dict(_V0, depths=(2, 2, 9, 2), dims=96, drop_path_rate=0.2)
    return _create_vmamba("vanilla_vmamba_tiny", pretrained, **dict(args, **kwargs))


@register_model
def vanilla_vmamba_small(pretrained=False, **kwargs) -> VMamba:
    """Vanilla-VMamba-S (v0): 44.4M params, 83.5%."""
    args = dict(_V0, depths=(2, 2, 27, 2), dims=96, drop_path_rate=0.3)
    return _create_vmamba("vanilla_vmamba_small", pretrained, **dict(args, **kwargs))


@register_model
def vanilla_vmamba_base(pretrained=False, **kwargs) -> VMamba:
    """Vanilla-VMamba-B (v0): 76.3M params, 83.7%."""
    args = dict(_V0, depths=(2, 2, 27, 2), dims=128, drop_path_rate=0.6)
    return _create_vmamba("vanilla_vmamba_base", pretrained, **dict(args, **kwargs))


@register_model
def vmamba_tiny_s1l8(pretrained=False, **kwargs) -> VMamba:
    """VMamba-T[s1l8] (v2, the README's VMamba-T): 30.2M params, 4.9G FLOPs, 82.6%."""
    args = dict(_V2, depths=(2, 2, 8, 2), dims=96, ssm_ratio=1.0, drop_path_rate=0.2)
    return _create_vmamba("vmamba_tiny_s1l8", pretrained, **dict(args, **kwargs))


@register_model
def vmamba_small_s2l15(pretrained=False, **kwargs) -> VMamba:
    """VMamba-S[s2l15] (v2): 50.1M params, 8.7G FLOPs, 83.6%."""
    args = dict(_V2, depths=(2, 2, 15, 2), dims=96, ssm_ratio=2.0, drop_path_rate=0.3)
    return _create_vmamba("vmamba_small_s2l15", pretrained, **dict(args, **kwargs))


@register_model
def vmamba_base_s2l15(pretrained=False, **kwargs) -> VMamba:
    """VMamba-B[s2l15] (v2): 88.6M params, 15.4G FLOPs, 83.9%."""
    args = dict(_V2, depths=(2, 2, 15, 2), dims=128, ssm_ratio=2.0, drop_path_rate=0.6)
    return _create_vmamba("vmamba_base_s2l15", pretrained, **dict(args, **kwargs))
