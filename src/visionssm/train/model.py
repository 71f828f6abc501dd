"""Model creation by name (timm registry, visionssm models registered on import) and the metadata
that travels with saved weights so a checkpoint can be rebuilt on its own.
"""

from __future__ import annotations

import difflib
from typing import Any

import timm
import torch
from timm.data import resolve_data_config

import visionssm  # noqa: F401  (registers visionssm models in timm)

from .errors import UserError


def check_model_name(name: str) -> None:
    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `visionssm models` lists ours"
    raise UserError(f"unknown model {name!r}{hint}")


def create_model(name: str, num_classes: int, img_size: int | None = None, drop_path: float | None = None,
                 device: torch.device | str = "cpu") -> torch.nn.Module:
    check_model_name(name)
    kwargs: dict[str, Any] = {"num_classes": num_classes}
    if img_size is not None:
        kwargs["img_size"] = img_size
    if drop_path is not None:
        kwargs["drop_path_rate"] = drop_path
    try:
        model = timm.create_model(name, pretrained=False, **kwargs)
    except TypeError as e:  # e.g. img_size for a model that has no such argument
        raise UserError(f"model {name!r} rejects {sorted(kwargs)}: {e}") from None
    return model.to(device)


def data_config_for(model: torch.nn.Module, img_size: int | None = None, digits: bool = False) -> dict:
    """timm's preprocessing for the model (mean, std, interpolation, crop), with our size override."""
    cfg = dict(resolve_data_config({}, model=model))
    if digits:
        from .data import digits_data_config

        cfg.update(digits_data_config())
    if img_size is not None:
        cfg["input_size"] = (3, img_size, img_size)
    cfg["input_size"] = tuple(int(v) for v in cfg["input_size"])
    cfg["mean"], cfg["std"] = tuple(float(v) for v in cfg["mean"]), tuple(float(v) for v in cfg["std"])
    return cfg


def checkpoint_meta(cfg, classes: list[str], data_config: dict, **extra) -> dict[str, Any]:
    """What eval/predict need to rebuild the model and its inputs from a weights file alone."""
    return {
        "model": cfg.model,
        "num_classes": len(classes),
        "classes": list(classes),
        "img_size": cfg.img_size,
        "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in data_config.items()},
        "data": cfg.data,
        "val_fraction": cfg.val_fraction,
        "split_seed": cfg.split_seed,
        **extra,
    }


def meta_data_config(meta: dict) -> dict:
    dc = dict(meta["data_config"])
    for key in ("input_size", "mean", "std"):
        dc[key] = tuple(dc[key])
    return dc
