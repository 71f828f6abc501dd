"""Shared helpers: run the CLI in-process, tiny training flags, a small ImageFolder tree of digits."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from visionssm.cli import main

# a few optimizer steps of the default model: enough to exercise every code path, fast on 2 cores
TINY = ["--epochs", "1", "--batch-size", "8", "--limit-train-batches", "3", "--limit-val-batches", "1"]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `visionssm ARGS` run in this process."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse exits by itself
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_line(err: str) -> str:
    """The one error line, asserting there is exactly one and no traceback."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    errors = [ln for ln in lines if ln.startswith("visionssm: error: ")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.fixture
def image_tree(tmp_path):
    """ROOT/{train,val}/{0,1,2}/*.png: 32x32 RGB digits (sklearn), 8 train and 3 val per class."""
    from visionssm.train.data import DigitsDataset

    digits = DigitsDataset("train")
    root = tmp_path / "imgs"
    counts = {"train": 8, "val": 3}
    seen = {c: 0 for c in range(3)}
    for image, target in zip(digits.images, digits.targets):
        if target > 2 or seen[target] >= sum(counts.values()):
            continue
        split = "train" if seen[target] < counts["train"] else "val"
        folder = root / split / str(target)
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{seen[target]:02d}.png")
        seen[target] += 1
    return root
