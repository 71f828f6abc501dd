"""Pick the weights out of a Swin-style training checkpoint (VSSD, EfficientViM and their kin).

Their ``save_checkpoint_ema`` writes {'model', 'model_ema', 'max_accuracy', 'max_accuray_ema' (sic), 'optimizer',
'config', ...}; a "best EMA" file holds the raw weights of that epoch under 'model' and the weights that reached
the best accuracy under 'model_ema'. official: YuHengsss/VSSD classification/utils/utils.py,
mlvlab/EfficientViM classification/utils/utils.py (save_checkpoint_ema).
"""

from __future__ import annotations

import collections

import torch

__all__ = ["load_training_checkpoint", "pick_state_dict"]


def load_training_checkpoint(path) -> dict:
    """Read an official VSSD / EfficientViM ``.pth`` without running pickled code.

    The files also pickle the run's yacs ``CfgNode`` ('config'), which ``torch.load(weights_only=True)`` refuses;
    that one name is read back as a plain ``OrderedDict`` (yacs need not be installed), nothing else is allowed.
    Pass the result to the family's ``checkpoint_filter_fn``.
    """
    with torch.serialization.safe_globals([(collections.OrderedDict, "yacs.config.CfgNode")]):
        return torch.load(path, map_location="cpu", weights_only=True)


def pick_state_dict(ckpt: dict, prefer_ema: bool = True) -> dict:
    """The state dict inside ``ckpt``: with both 'model' and 'model_ema', the one whose recorded best accuracy is
    higher (``prefer_ema`` breaks ties and decides when no accuracies are recorded); else 'model', 'model_ema' or
    mmengine's 'state_dict'; a plain state dict is returned as is."""
    has = {k: isinstance(ckpt.get(k), dict) for k in ("model", "model_ema", "state_dict")}
    if has["model"] and has["model_ema"]:
        acc, acc_ema = ckpt.get("max_accuracy"), ckpt.get("max_accuray_ema", ckpt.get("max_accuracy_ema"))
        if isinstance(acc, (int, float)) and isinstance(acc_ema, (int, float)) and acc != acc_ema:
            return ckpt["model_ema"] if acc_ema > acc else ckpt["model"]
        return ckpt["model_ema"] if prefer_ema else ckpt["model"]
    for key in ("model", "model_ema", "state_dict"):
        if has[key]:
            return ckpt[key]
    return ckpt
