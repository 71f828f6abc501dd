"""Data: digits split, deterministic batch order across ranks and resume, seeded augmentation."""

from __future__ import annotations

import numpy as np
import torch

from visionssm.train.config import TrainConfig
from visionssm.train.data import (
    DigitsDataset,
    EpochBatches,
    Shard,
    Transformed,
    digits_data_config,
    make_transforms,
)


def test_digits_split_is_stratified_and_fixed():
    train, val = DigitsDataset("train"), DigitsDataset("val")
    assert len(train) + len(val) == 1797 and len(val) == 360
    assert train.images.shape[1:] == (3, 32, 32) and train.images.dtype == torch.float32
    assert 0.0 <= float(train.images.min()) and float(train.images.max()) <= 1.0
    counts = np.bincount(val.targets, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # ~20% of every class
    again = DigitsDataset("val")
    assert again.targets == val.targets and torch.equal(again.images, val.images)


def _flat(sampler):
    return [i for batch in sampler for i, _ in batch]


def test_ranks_split_each_global_batch():
    one = EpochBatches(100, 8, seed=3)
    ranks = [EpochBatches(100, 4, seed=3, rank=r, world=2) for r in (0, 1)]
    for s in (one, *ranks):
        s.set_epoch(2)
    assert len(one) == len(ranks[0]) == 12  # 100 // 8, last partial global batch dropped
    for b_one, b0, b1 in zip(one, *ranks):
        assert b_one == b0 + b1  # same samples and augmentation seeds, rank 0 first
    assert len(set(_flat(one))) == 96


def test_epochs_reshuffle_and_resume_skips_consumed_batches():
    s = EpochBatches(64, 8, seed=0)
    s.set_epoch(0)
    first = list(s)
    s.set_epoch(1)
    assert list(s) != first
    s.set_epoch(0, start=3)
    assert list(s) == first[3:] and len(s) == 5
    assert len(EpochBatches(64, 8, seed=0, limit=2)) == 2


def test_augmentation_depends_only_on_seed():
    plain = TrainConfig()
    plain.resolve_aug(digits=True)
    assert plain.hflip == 0.0 and plain.scale == [1.0, 1.0]  # digits: no flips, no crops by default
    cfg = TrainConfig(scale=[0.5, 1.0], ratio=[0.8, 1.25])
    cfg.resolve_aug(digits=True)
    dc = dict(digits_data_config(), mean=(0.5,) * 3, std=(0.5,) * 3)
    train_tf, eval_tf = make_transforms(cfg, dc, digits=True)
    ds = Transformed(DigitsDataset("val"), train_tf)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b, c = ds[(5, 42)][0], ds[(5, 42)][0], ds[(5, 43)][0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), before)  # the global stream is untouched
    x, _ = Transformed(DigitsDataset("val"), eval_tf)[5]
    assert x.shape == (3, 32, 32)


def test_val_shards_cover_every_image_once():
    shards = [list(Shard(11, r, 3)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(11))
