"""Validation loop (shared by training) and the `eval` / `predict` commands."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .checkpoint import load_into, load_weights
from .data import (
    DigitsDataset,
    FolderDataset,
    Shard,
    Transformed,
    _scan,
    eval_transform,
    load_image,
    verify_images,
)
from .distributed import Dist, all_reduce_sum
from .errors import UserError
from .metrics import plot_confusion
from .model import create_model, meta_data_config


@torch.no_grad()
def evaluate(model, loader, device, autocast, num_classes: int, d: Dist | None = None) -> dict:
    """Loss, top-1, top-5 (%) and confusion matrix over the loader, summed across ranks."""
    model.eval()
    d = d or Dist()
    k = min(5, num_classes)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    hits = torch.zeros(2, dtype=torch.float64, device=device)  # top-1, top-k
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.float64, device=device)
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast:
            logits = model(x)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        topk = logits.topk(k, dim=1).indices
        hits[0] += (topk[:, 0] == y).sum()
        hits[1] += (topk == y[:, None]).any(dim=1).sum()
        confusion += torch.bincount(y * num_classes + topk[:, 0], minlength=num_classes**2).double()
        count += y.numel()
    for t in (loss_sum, hits, confusion, count):
        all_reduce_sum(t, d)
    n = max(count.item(), 1.0)
    return {
        "loss": loss_sum.item() / n,
        "top1": 100.0 * hits[0].item() / n,
        "top5": 100.0 * hits[1].item() / n,
        "confusion": confusion.view(num_classes, num_classes).long().cpu().numpy(),
        "count": int(count.item()),
    }


def _model_from_checkpoint(path: Path, model_name: str | None, device):
    state_dict, meta = load_weights(path)
    name = model_name or meta.get("model")
    if not name:
        raise UserError(f"checkpoint {path} carries no visionssm metadata: pass --model NAME")
    classes = meta.get("classes") or [str(i) for i in range(_guess_classes(state_dict, path))]
    model = create_model(name, num_classes=len(classes), img_size=meta.get("img_size"))
    load_into(model, state_dict, path, name)
    if "data_config" in meta:
        data_config = meta_data_config(meta)
    else:
        from .model import data_config_for

        data_config = data_config_for(model)
    return model.to(device).eval(), meta, classes, data_config


def _guess_classes(state_dict, path) -> int:
    """Without metadata: the classifier is the last 2-D weight (timm heads are)."""
    weights = [v for k, v in state_dict.items() if k.endswith("weight") and v.dim() == 2]
    if not weights:
        raise UserError(f"checkpoint {path}: cannot tell the number of classes (no metadata, no linear head)")
    return weights[-1].shape[0]


def run_eval(checkpoint: str, data: str | None = None, model_name: str | None = None, batch_size: int = 256,
             device: str = "auto", output: str | None = None, limit_batches: int | None = None) -> dict:
    from .distributed import resolve_device

    dev = resolve_device(device)
    path = Path(checkpoint)
    model, meta, classes, data_config = _model_from_checkpoint(path, model_name, dev)
    data = data or meta.get("data")  # default: the data the run was trained on
    if data is None and meta:
        dataset = DigitsDataset("val", meta.get("val_fraction", 0.2), meta.get("split_seed", 0))
        where = "digits val split"
    elif data is None:
        raise UserError(f"checkpoint {path} was not trained on the digits default: pass --data PATH")
    else:
        root = Path(data)
        split = "val" if (root / "val").is_dir() else None  # ROOT/val, or ROOT itself as one split
        samples, found = _scan(root.parent if split is None else root, root.name if split is None else split)
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise UserError(f"--data {data}: classes {unknown} are unknown to checkpoint {path}")
        names = {i: c for c, i in found.items()}
        samples, _ = verify_images([(p, classes.index(names[t])) for p, t in samples], skip=False)
        dataset = FolderDataset(samples, classes)
        where = str(root / split) if split else str(root)
    limit = limit_batches * batch_size if limit_batches else None
    loader = DataLoader(Transformed(dataset, eval_transform(data_config)), batch_size=batch_size,
                        sampler=Shard(len(dataset), limit=limit))
    result = evaluate(model, loader, dev, contextlib.nullcontext(), len(classes))
    out_dir = Path(output) if output else path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    result["confusion_png"] = out_dir / "confusion.png"
    plot_confusion(result["confusion_png"], result["confusion"], classes,
                   f"{meta.get('model', model_name)} on {where}: top-1 {result['top1']:.2f}%")
    result["where"] = where
    return result


@torch.no_grad()
def run_predict(checkpoint: str, images: list[str], topk: int = 5, model_name: str | None = None,
                device: str = "auto") -> list[tuple[str, list[tuple[str, float]]]]:
    from .distributed import resolve_device

    dev = resolve_device(device)
    model, _, classes, data_config = _model_from_checkpoint(Path(checkpoint), model_name, dev)
    transform = eval_transform(data_config)
    k = max(1, min(topk, len(classes)))
    results = []
    for image in images:
        if not Path(image).is_file():
            raise UserError(f"image {image} not found")
        x = transform(load_image(image)).unsqueeze(0).to(dev)
        probs = model(x).float().softmax(dim=1)[0]
        p, i = probs.topk(k)
        results.append((image, [(classes[j], float(q)) for q, j in zip(p.tolist(), i.tolist())]))
    return results
