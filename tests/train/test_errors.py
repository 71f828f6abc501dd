"""Bad input: one line naming the culprit, exit 2, nothing overwritten or lost (issue item 7)."""

from __future__ import annotations

import hashlib
import os

import pytest
import torch
from safetensors.torch import load_file

from visionssm.train import TrainConfig, train

from .conftest import TINY, error_line, run_cli


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    train(TrainConfig(output=str(out), epochs=1, batch_size=8, limit_train_batches=3, limit_val_batches=1))
    return out


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_corrupt_image_is_named(capsys, image_tree, tmp_path):
    bad = image_tree / "train" / "1" / "03.png"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated mid-stream
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "train", "--data", image_tree, "--output", out, *TINY)
    assert code == 2
    line = error_line(err)
    assert str(bad) in line and "--skip-corrupt" in line
    assert not out.exists()  # nothing written before the data checks pass


def test_skip_corrupt_skips_and_counts(capsys, image_tree, tmp_path):
    (image_tree / "train" / "0" / "00.png").write_bytes(b"not an image at all")
    (image_tree / "val" / "2" / "09.png").write_bytes(b"")
    out_dir = tmp_path / "o"
    code, out, err = run_cli(capsys, "train", "--data", image_tree, "--output", out_dir, "--skip-corrupt",
                             *TINY)
    assert code == 0, err
    assert "skipped 2 corrupt image(s)" in out
    assert (out_dir / "last.safetensors").is_file()


def test_missing_split_folder(capsys, image_tree, tmp_path):
    for f in (image_tree / "val").rglob("*.png"):
        f.unlink()
    code, _, err = run_cli(capsys, "train", "--data", image_tree, "--output", tmp_path / "o", *TINY)
    assert code == 2 and "holds no images" in error_line(err) and str(image_tree / "val") in err
    os.rename(image_tree / "val", image_tree / "valid")
    code, _, err = run_cli(capsys, "train", "--data", image_tree, "--output", tmp_path / "o", *TINY)
    assert code == 2 and "missing split folder" in error_line(err)
    code, _, err = run_cli(capsys, "train", "--data", tmp_path / "nowhere", *TINY)
    assert code == 2 and "no such directory" in error_line(err)


def test_unknown_model_suggests_close_names(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--model", "vim_nano_patch4_23", "--output", tmp_path / "o",
                           *TINY)
    line = error_line(err)
    assert code == 2 and "unknown model 'vim_nano_patch4_23'" in line and "vim_nano_patch4_32" in line
    assert not (tmp_path / "o").exists()


def test_checkpoint_of_another_architecture(capsys, run_dir):
    best = run_dir / "best.safetensors"
    code, _, err = run_cli(capsys, "eval", "--checkpoint", best, "--model", "resnet10t")
    line = error_line(err)
    assert code == 2 and "does not fit resnet10t" in line and "missing" in line and "unexpected" in line


def test_truncated_checkpoints(capsys, run_dir, tmp_path):
    weights = tmp_path / "cut.safetensors"
    weights.write_bytes((run_dir / "last.safetensors").read_bytes()[:5000])
    code, _, err = run_cli(capsys, "eval", "--checkpoint", weights)
    assert code == 2 and "truncated or corrupt" in error_line(err) and str(weights) in err
    # a truncated state.pt stops --resume before anything is touched
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("config.yaml", "last.safetensors"):
        (copy / name).write_bytes((run_dir / name).read_bytes())
    (copy / "state.pt").write_bytes((run_dir / "state.pt").read_bytes()[:100_000])
    before = {p.name: _digest(p) for p in copy.iterdir()}
    code, _, err = run_cli(capsys, "train", "--resume", copy)
    assert code == 2 and "truncated or corrupt" in error_line(err) and "state.pt" in err
    assert before == {p.name: _digest(p) for p in copy.iterdir()}


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_code_is_refused_and_never_runs(capsys, run_dir, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Evil(marker)}, evil)
    code, _, err = run_cli(capsys, "eval", "--checkpoint", evil, "--model", "vim_nano_patch4_32")
    line = error_line(err)
    assert code == 2 and "refused" in line and str(evil) in line
    # same through --resume: a poisoned state.pt
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "config.yaml").write_bytes((run_dir / "config.yaml").read_bytes())
    (copy / "state.pt").write_bytes(evil.read_bytes())
    code, _, err = run_cli(capsys, "train", "--resume", copy)
    assert code == 2 and "refused" in error_line(err)
    assert not marker.exists()


def test_output_holding_a_run_is_refused(capsys, run_dir):
    before = {p.name: _digest(p) for p in run_dir.iterdir()}
    code, _, err = run_cli(capsys, "train", "--output", run_dir, *TINY)
    line = error_line(err)
    assert code == 2 and "already holds a run" in line and "--overwrite" in line
    assert before == {p.name: _digest(p) for p in run_dir.iterdir()}
    # a resumed run keeps its settings
    code, _, err = run_cli(capsys, "train", "--resume", run_dir, "--lr", "0.5")
    assert code == 2 and "--lr 0.5 differs" in error_line(err)
    assert before == {p.name: _digest(p) for p in run_dir.iterdir()}


def test_overwrite_replaces_the_run(capsys, tmp_path):
    out = tmp_path / "o"
    assert run_cli(capsys, "train", "--output", out, *TINY)[0] == 0
    (out / "confusion.png").write_bytes(b"stale")
    code, _, err = run_cli(capsys, "train", "--output", out, "--overwrite", "--seed", "1", *TINY)
    assert code == 0, err
    assert not (out / "confusion.png").exists()
    assert "seed: 1" in (out / "config.yaml").read_text()


def test_nan_loss_stops_and_keeps_last_good_checkpoint(capsys, tmp_path):
    out = tmp_path / "o"
    code, _, err = run_cli(capsys, "train", "--output", out, "--lr", "1e30", "--warmup-epochs", "0",
                           "--save-every-steps", "1", "--epochs", "1", "--batch-size", "8",
                           "--limit-train-batches", "8", "--no-model-ema")
    line = error_line(err)
    assert code == 2 and ("loss is nan" in line or "loss is inf" in line), line
    step = int(line.split(" at step ")[1].split()[0])
    assert f"last good checkpoint: {out / 'state.pt'} (step {step - 1})" in line
    state = torch.load(out / "state.pt", weights_only=True)
    assert state["step"] == step - 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (out / "last.safetensors").exists() or all(
        torch.isfinite(v).all() for v in load_file(out / "last.safetensors").values()
    )
