"""A run directory holds every output of DESIGN.md's "Training outputs", each complete."""

from __future__ import annotations

import csv

import pytest
import torch
import yaml
from safetensors import safe_open

from visionssm.train.config import TrainConfig, fields

from .conftest import run_cli


@pytest.fixture
def run(tmp_path):
    return tmp_path / "run"


def test_run_directory_contents(capsys, run):
    code, stdout, err = run_cli(capsys, "train", "--output", run, "--epochs", "2", "--batch-size", "8",
                                "--limit-train-batches", "3", "--limit-val-batches", "1", "--log-every", "2")
    assert code == 0, err
    names = {p.name for p in run.iterdir()}
    expected = {"config.yaml", "metrics.csv", "curves.png", "last.safetensors", "best.safetensors",
                "state.pt"}
    assert expected <= names
    assert any(n.startswith("events.out.tfevents.") for n in names)
    assert not [n for n in names if n.endswith(".tmp")]

    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert set(saved["config"]) == {f.name for f in fields()}  # every setting
    assert TrainConfig(**saved["config"]).epochs == 2
    assert saved["run"]["device"] == "cpu" and saved["run"]["world_size"] == 1

    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert list(rows[0]) == ["epoch", "train_loss", "val_loss", "val_top1", "val_top5", "lr", "img_per_s"]

    state = torch.load(run / "state.pt", weights_only=True)
    assert state["epoch"] == 2 and state["step"] == 6 and state["step_in_epoch"] == 0
    assert {"model", "ema", "optimizer", "scheduler", "per_rank"} <= set(state)
    with safe_open(str(run / "last.safetensors"), "pt") as f:
        assert '"model": "vim_nano_patch4_32"' in f.metadata()["visionssm"]

    # not a TTY here: plain progress lines, one summary line per epoch
    assert "epoch 1/2 step 2/3 loss" in stdout and "img/s" in stdout
    summaries = [ln for ln in stdout.splitlines() if " train_loss " in ln]
    assert [ln.split()[1] for ln in summaries] == ["1/2", "2/2"] and "done in" in stdout
