"""Training configuration: one flat dataclass; its fields are the `visionssm train` flags and config.yaml.

The defaults are the embedded run: a small Vim on scikit-learn's digits, sized to finish on two CPU
cores in a few minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError

DEFAULT_MODEL = "vim_nano_patch4_32"


def _opt(default, help: str, **argparse_kw):
    """A config field with its argparse help/type/choices in the metadata."""
    return field(default=default, metadata={"help": help, **argparse_kw})


@dataclass
class TrainConfig:
    # model
    model: str = _opt(DEFAULT_MODEL, "timm model name (visionssm models register on import)")
    img_size: int | None = _opt(None, "input resolution (default: the model's)", type=int)
    drop_path: float | None = _opt(None, "stochastic depth rate (default: the model's)", type=float)
    grad_checkpointing: bool = _opt(False, "recompute activations in backward to save memory")
    # data
    data: str | None = _opt(None, "ImageFolder root with train/ and val/ (default: sklearn digits)",
                            metavar="PATH")
    val_fraction: float = _opt(0.2, "digits only: held-out fraction (stratified split)", type=float)
    split_seed: int = _opt(0, "digits only: seed of the train/val split (fixed across --seed)", type=int)
    skip_corrupt: bool = _opt(False, "skip unreadable images (and count them) instead of stopping")
    workers: int | None = _opt(None, "DataLoader workers (default: digits 0, else min(8, cpus))", type=int)
    # optimisation. The defaults fit the digits run into ~4 minutes of 2 CPU cores (the CPU scan is
    # the bottleneck); val top-1 varies by about +-0.7% with the seed (360 val images)
    epochs: int = _opt(13, "epochs", type=int)
    batch_size: int = _opt(16, "batch size per process (global batch = this x world size)", type=int)
    lr: float = _opt(4e-3, "peak learning rate", type=float)
    opt: str = _opt("adamw", "timm optimizer name (create_optimizer_v2)")
    weight_decay: float = _opt(0.05, "weight decay (timm skips norms/biases/no_weight_decay())", type=float)
    sched: str = _opt("cosine", "timm scheduler name (create_scheduler_v2), stepped per update")
    warmup_epochs: int = _opt(1, "linear warmup epochs", type=int)
    warmup_lr: float = _opt(1e-5, "learning rate at the start of warmup", type=float)
    min_lr: float = _opt(1e-5, "learning rate at the end of the schedule", type=float)
    clip_grad: float | None = _opt(1.0, "clip gradient norm to this (none: no clipping)", type=float)
    label_smoothing: float = _opt(0.1, "label smoothing", type=float)
    mixup: float = _opt(0.0, "mixup alpha (0: off)", type=float)
    cutmix: float = _opt(0.0, "cutmix alpha (0: off)", type=float)
    model_ema: bool = _opt(True, "keep an EMA of the weights (ModelEmaV3); validate and save it")
    ema_decay: float = _opt(0.998, "EMA decay (with warmup)", type=float)
    # augmentation (timm create_transform); None picks per dataset. Digits: shifts of up to one source
    # pixel, no crops or flips (measured in this budget: shifts gave about +1% top-1, crops nothing);
    # folders: timm's ImageNet defaults
    scale: list[float] | None = _opt(None, "random-resized-crop area range", type=float, nargs=2,
                                       metavar=("MIN", "MAX"))
    ratio: list[float] | None = _opt(None, "random-resized-crop aspect range", type=float, nargs=2,
                                       metavar=("MIN", "MAX"))
    translate: float | None = _opt(None, "random shift, fraction of the size (torchvision RandomAffine)",
                                   type=float)
    hflip: float | None = _opt(None, "horizontal flip probability", type=float)
    color_jitter: float | None = _opt(None, "color jitter strength (0: off)", type=float)
    auto_augment: str | None = _opt(None, "timm auto-augment spec, e.g. rand-m9-mstd0.5")
    reprob: float = _opt(0.0, "random erasing probability", type=float)
    # runtime
    seed: int = _opt(0, "seed of init, data order, augmentation and dropout", type=int)
    amp: str = _opt("auto", "autocast dtype (auto: bf16 on CUDA, none on CPU)",
                    choices=("auto", "bf16", "fp16", "none"))
    device: str = _opt("auto", "cpu, cuda, cuda:1 ... (auto: cuda if available; torchrun: cuda:LOCAL_RANK)")
    output: str | None = _opt(None, "run directory (default: runs/<timestamp>-<model>)", metavar="DIR")
    save_every_steps: int = _opt(100, "also save state.pt every N optimizer steps (0: per epoch)", type=int)
    log_every: int = _opt(20, "plain progress line every N steps when not on a TTY", type=int)
    limit_train_batches: int | None = _opt(None, "cap batches per epoch (quick runs, tests)", type=int)
    limit_val_batches: int | None = _opt(None, "cap validation batches", type=int)

    def resolve_aug(self, digits: bool) -> None:
        """Fill augmentation fields left at None; digits are centred and must not be flipped."""
        if self.scale is None:
            self.scale = [1.0, 1.0] if digits else [0.08, 1.0]
        if self.ratio is None:
            self.ratio = [1.0, 1.0] if digits else [0.75, 4 / 3]
        if self.translate is None:
            self.translate = 0.125 if digits else 0.0
        if self.hflip is None:
            self.hflip = 0.0 if digits else 0.5
        if self.color_jitter is None:
            self.color_jitter = 0.0 if digits else 0.4

    def check(self) -> None:
        """Reject settings that cannot work, naming the flag."""
        positive = ("epochs", "batch_size", "lr")
        for name in positive:
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        for name in ("limit_train_batches", "limit_val_batches", "workers", "img_size"):
            value = getattr(self, name)
            if value is not None and value < (0 if name == "workers" else 1):
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if not 0.0 < self.val_fraction < 1.0:
            raise UserError(f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        if self.save_every_steps < 0:
            raise UserError(f"--save-every-steps must be >= 0, got {self.save_every_steps}")


# settings that may differ when resuming: they do not change what is computed
RESUME_OVERRIDABLE = {"epochs", "device", "workers", "save_every_steps", "log_every", "limit_val_batches"}


def fields() -> list[dataclasses.Field]:
    return list(dataclasses.fields(TrainConfig))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per field; defaults are SUPPRESSed so we can tell which flags the user gave."""
    for f in fields():
        flag = "--" + f.name.replace("_", "-")
        meta = dict(f.metadata)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        meta["help"] = f"{meta['help']} [default: {default}]"
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                **meta)
        else:
            meta.setdefault("type", str)
            if "None" in str(f.type):  # optional settings accept "none" on the command line
                meta["type"] = _none_or(meta["type"])
            parser.add_argument(flag, default=argparse.SUPPRESS, **meta)


def _none_or(kind):
    def parse(text: str):
        return None if text.lower() in ("none", "null") else kind(text)

    parse.__name__ = getattr(kind, "__name__", "value")  # argparse names the type in its errors
    return parse


def from_args(given: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """Config from explicitly given flags on top of ``base`` (or the defaults)."""
    names = {f.name for f in fields()}
    values = dataclasses.asdict(base) if base is not None else {}
    values.update({k: v for k, v in given.items() if k in names})
    return TrainConfig(**values)


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def load_yaml(path: Path) -> TrainConfig:
    """Config of an existing run; unknown keys are named rather than ignored."""
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} not found: not a run directory") from None
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"cannot read {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("config"), dict):
        raise UserError(f"{path} has no 'config' mapping: not a visionssm run config")
    cfg = raw["config"]
    unknown = sorted(set(cfg) - {f.name for f in fields()})
    if unknown:
        raise UserError(f"{path}: unknown settings {unknown} (written by another visionssm version?)")
    return TrainConfig(**cfg)
