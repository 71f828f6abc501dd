"""Datasets and batch order.

- The embedded default is scikit-learn's digits: 1,797 8x8 images in 0..16, scaled to [0, 1], made
  RGB and bilinearly upsampled to 32x32, split stratified with a fixed seed.
- ``--data ROOT`` reads an ImageFolder tree ROOT/{train,val}/<class>/<image>; every image is decoded
  once up front so a corrupt file is named before training starts, not hours in.
- Batch order and augmentation are pure functions of (seed, epoch, index): the same batches come out
  whatever the number of workers or ranks, and a resumed run replays the rest of an epoch exactly.
"""

from __future__ import annotations

import contextlib
import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from timm.data import create_transform
from timm.data.readers.img_extensions import get_img_extensions
from timm.data.readers.reader_image_folder import find_images_and_targets
from torch.utils.data import Dataset, Sampler

from .errors import UserError

DIGITS_SIZE = 32


class DigitsDataset(Dataset):
    """scikit-learn's bundled digits as float RGB tensors (3, 32, 32) in [0, 1]."""

    def __init__(self, split: str, val_fraction: float = 0.2, split_seed: int = 0, size: int = DIGITS_SIZE):
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        index = np.arange(len(digits.target))
        train_idx, val_idx = train_test_split(
            index, test_size=val_fraction, stratify=digits.target, random_state=split_seed
        )
        chosen = train_idx if split == "train" else val_idx
        x = torch.from_numpy(digits.images[chosen]).float().div_(16.0).unsqueeze(1)
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
        self.images = x.expand(-1, 3, -1, -1).contiguous()
        self.targets = [int(t) for t in digits.target[chosen]]
        self.classes = [str(c) for c in range(10)]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        return self.images[i], self.targets[i]


def load_image(path: str | Path) -> Image.Image:
    """Fully decoded RGB image; any failure becomes a one-line error naming the file."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")  # convert() forces the full decode: catches truncated files
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        raise UserError(f"corrupt image {path}: {type(e).__name__}: {e}") from None


class FolderDataset(Dataset):
    def __init__(self, samples: list[tuple[str, int]], classes: list[str]):
        self.samples, self.classes = samples, classes
        self.targets = [t for _, t in samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):
        path, target = self.samples[i]
        return load_image(path), target


def _scan(root: Path, split: str, class_to_idx: dict[str, int] | None = None):
    folder = root / split
    if not folder.is_dir():
        raise UserError(f"--data {root}: missing split folder {folder}")
    samples, found = find_images_and_targets(str(folder), class_to_idx=None)
    stray = [p for p, t in samples if os.path.dirname(p) == str(folder)]
    if stray:
        raise UserError(f"{stray[0]}: images must sit in class folders ({folder}/<class>/<image>)")
    if not samples:
        exts = " ".join(sorted(get_img_extensions(as_set=True)))
        raise UserError(f"--data {root}: {folder} holds no images ({exts}) in class folders")
    if class_to_idx is not None:
        extra = sorted(set(found) - set(class_to_idx))
        if extra:
            raise UserError(f"{folder}: classes {extra} are not in the train split")
        names = {i: c for c, i in found.items()}
        samples = [(p, class_to_idx[names[t]]) for p, t in samples]
        return samples, class_to_idx
    return samples, found


def _check(path: str) -> str | None:
    try:
        with Image.open(path) as im:
            im.load()
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return None


def verify_images(samples: list[tuple[str, int]], skip: bool) -> tuple[list[tuple[str, int]], list[str]]:
    """Decode every image once (threads: PIL releases the GIL); stop on the first bad one unless skip."""
    with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 1) * 2)) as pool:
        problems = list(pool.map(_check, [p for p, _ in samples]))
    bad = [(p, why) for (p, _), why in zip(samples, problems) if why is not None]
    if bad and not skip:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise UserError(f"corrupt image {bad[0][0]}: {bad[0][1]}{more}; --skip-corrupt skips such files")
    good = [s for s, why in zip(samples, problems) if why is None]
    return good, [p for p, _ in bad]


@dataclass
class Data:
    train: Dataset
    val: Dataset
    classes: list[str]
    digits: bool
    skipped: list[str] = field(default_factory=list)

    def describe(self) -> str:
        where = "sklearn digits" if self.digits else "image folder"
        extra = f", skipped {len(self.skipped)} corrupt" if self.skipped else ""
        sizes = f"{len(self.train)} train / {len(self.val)} val images, {len(self.classes)} classes"
        return f"{where}: {sizes}{extra}"


def build_data(data: str | None, val_fraction: float = 0.2, split_seed: int = 0, skip_corrupt: bool = False):
    if data is None:
        train, val = (DigitsDataset(s, val_fraction, split_seed) for s in ("train", "val"))
        return Data(train, val, train.classes, digits=True)
    root = Path(data)
    if not root.is_dir():
        raise UserError(f"--data {root}: no such directory")
    train_samples, class_to_idx = _scan(root, "train")
    val_samples, _ = _scan(root, "val", class_to_idx)
    train_samples, bad_train = verify_images(train_samples, skip_corrupt)
    val_samples, bad_val = verify_images(val_samples, skip_corrupt)
    for split, samples in (("train", train_samples), ("val", val_samples)):
        if not samples:
            raise UserError(f"--data {root}: no readable images left in {root / split}")
    classes = sorted(class_to_idx, key=class_to_idx.get)
    return Data(
        FolderDataset(train_samples, classes), FolderDataset(val_samples, classes), classes,
        digits=False, skipped=bad_train + bad_val,
    )


def digits_data_config() -> dict:
    """Digits are already full-frame at 32x32: no centre-crop margin."""
    return {"input_size": (3, DIGITS_SIZE, DIGITS_SIZE), "interpolation": "bilinear", "crop_pct": 1.0,
            "crop_mode": "center"}


def make_transforms(cfg, data_config: dict, digits: bool):
    """timm's train/eval transforms; digits tensors go through PIL only if auto-augment needs it."""
    common = dict(input_size=data_config["input_size"], interpolation=data_config["interpolation"],
                  mean=data_config["mean"], std=data_config["std"])
    train_tf = create_transform(
        is_training=True, scale=tuple(cfg.scale), ratio=tuple(cfg.ratio), hflip=cfg.hflip, vflip=0.0,
        color_jitter=cfg.color_jitter or None, auto_augment=cfg.auto_augment, re_prob=cfg.reprob, **common,
    )
    eval_tf = eval_transform(data_config)
    from torchvision import transforms

    if cfg.translate:  # before timm's crop; digits vary in position more than in scale
        shift = transforms.RandomAffine(degrees=0.0, translate=(cfg.translate, cfg.translate))
        train_tf = transforms.Compose([shift, train_tf])
    if digits and cfg.auto_augment:
        train_tf = transforms.Compose([transforms.ToPILImage(), train_tf])
    return train_tf, eval_tf


def eval_transform(data_config: dict):
    return create_transform(
        input_size=data_config["input_size"], is_training=False, interpolation=data_config["interpolation"],
        mean=data_config["mean"], std=data_config["std"], crop_pct=data_config["crop_pct"],
        crop_mode=data_config.get("crop_mode", "center"),
    )


def _mix(*words: int) -> int:
    return int(np.random.SeedSequence([w & 0xFFFFFFFF for w in words]).generate_state(1)[0])


@contextlib.contextmanager
def seeded(seed: int):
    """Seed torch/numpy/python RNGs inside, restore them after: transforms draw from global RNGs."""
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


class Transformed(Dataset):
    """Applies a transform; keys ``(index, seed)`` run it under that seed (see EpochBatches)."""

    def __init__(self, base: Dataset, transform):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, None)
        image, target = self.base[index]
        if seed is None:
            return self.transform(image), target
        with seeded(seed):
            return self.transform(image), target

    def __getitems__(self, keys: list) -> list:
        """A batch (the DataLoader's fast path). In the main process the per-image ops run on one
        thread: tiny tensors gain nothing from intra-op threads, and on a busy machine their
        thread hand-offs cost 100x the work (16 ms vs 0.1 ms an image, measured)."""
        threads = torch.get_num_threads()
        if threads == 1 or torch.utils.data.get_worker_info() is not None:
            return [self[k] for k in keys]
        torch.set_num_threads(1)
        try:
            return [self[k] for k in keys]
        finally:
            torch.set_num_threads(threads)


class EpochBatches(Sampler):
    """Training batches of ``(index, aug_seed)`` for one rank.

    Epoch e shuffles with a permutation seeded by (seed, e) and cuts it into global batches of
    batch_size * world; rank r takes slice r of each, so one process with the global batch sees the
    same samples in the same order. The last partial global batch is dropped (equal shards keep DDP
    gradients equal to the single-process mean). ``start`` skips batches already consumed.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 limit: int | None = None):
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        full = n // (batch_size * world)
        self.num_batches = min(full, limit) if limit else full
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.num_batches - self.start

    def __iter__(self):
        g = torch.Generator().manual_seed(_mix(self.seed, self.epoch, 0x5EED))
        perm = torch.randperm(self.n, generator=g).tolist()
        global_batch = self.batch_size * self.world
        for b in range(self.start, self.num_batches):
            lo = b * global_batch + self.rank * self.batch_size
            yield [(i, _mix(self.seed, self.epoch, i)) for i in perm[lo : lo + self.batch_size]]


class Shard(Sampler):
    """Validation indices rank, rank + world, ...: every image is seen once across ranks."""

    def __init__(self, n: int, rank: int = 0, world: int = 1, limit: int | None = None):
        self.indices = list(range(rank, n, world))[: limit if limit else None]

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        return iter(self.indices)
