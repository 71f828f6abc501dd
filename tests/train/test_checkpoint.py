"""Atomic writes and safe loading."""

from __future__ import annotations

import pytest
import torch

from visionssm.train.checkpoint import atomic_write, load_weights, save_state, save_weights, torch_load
from visionssm.train.errors import UserError


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def failing(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, failing)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temporary left behind


def test_weights_roundtrip_with_metadata_and_shared_tensors(tmp_path):
    w = torch.randn(3, 4)
    sd = {"a.weight": w, "b.weight": w}  # tied: safetensors refuses shared storage unless copied
    save_weights(tmp_path / "w.safetensors", sd, {"model": "x", "classes": ["a", "b", "c"]})
    loaded, meta = load_weights(tmp_path / "w.safetensors")
    assert meta == {"model": "x", "classes": ["a", "b", "c"]}
    assert torch.equal(loaded["a.weight"], w) and torch.equal(loaded["b.weight"], w)


def test_state_with_rng_and_plain_values_loads_weights_only(tmp_path):
    import random

    state = {"model": {"w": torch.ones(2)}, "step": 3, "python": random.getstate(), "history": [{"a": 1.5}]}
    save_state(tmp_path / "state.pt", state)
    back = torch_load(tmp_path / "state.pt")
    assert back["step"] == 3 and back["python"] == state["python"] and back["history"] == [{"a": 1.5}]


def test_ddp_prefix_and_wrappers_are_unwrapped(tmp_path):
    torch.save({"state_dict": {"module.w": torch.ones(1)}}, tmp_path / "c.pth")
    sd, meta = load_weights(tmp_path / "c.pth")
    assert list(sd) == ["w"] and meta == {}


def test_missing_checkpoint_is_one_line(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_weights(tmp_path / "nope.safetensors")
