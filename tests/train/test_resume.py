"""SIGKILL in the middle of an epoch, --resume, and end bit for bit where an uninterrupted run ends
(issue item 4)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import torch

from visionssm.train import TrainConfig, train

from .conftest import run_cli

STEPS = 16  # per epoch; the kill lands early in epoch 2, well away from its end
FLAGS = ["--epochs", "2", "--batch-size", "8", "--limit-train-batches", str(STEPS),
         "--limit-val-batches", "2", "--save-every-steps", "1", "--warmup-epochs", "1"]


def _state(path):
    return torch.load(path / "state.pt", weights_only=True)


def _wait_for_step(path, step: int, proc, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "training ended before it could be killed"
        try:
            if _state(path)["step"] >= step:
                return
        except (FileNotFoundError, RuntimeError, EOFError):
            pass  # not written yet (renames are atomic, so never half-written)
        time.sleep(0.01)
    raise TimeoutError(f"no state.pt at step {step} after {timeout}s")


def test_sigkill_mid_epoch_then_resume_is_bit_exact(capsys, tmp_path):
    # uninterrupted reference, in this process
    ref = tmp_path / "ref"
    code = run_cli(capsys, "train", "--output", ref, *FLAGS)[0]
    assert code == 0

    # the same run in a child process, SIGKILLed a few steps into epoch 2
    cut = tmp_path / "cut"
    cmd = [sys.executable, "-m", "visionssm.cli", "train", "--output", str(cut), *FLAGS]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_step(cut, STEPS + 2, proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed = _state(cut)
    where = (killed["epoch"], killed["step_in_epoch"])
    assert killed["epoch"] == 1 and 0 < killed["step_in_epoch"] < STEPS, where

    code, out, err = run_cli(capsys, "train", "--resume", cut)
    assert code == 0, err
    assert f"resuming {cut} at epoch 2, step {killed['step']}" in out

    a, b = _state(ref), _state(cut)
    assert a["step"] == b["step"] == 2 * STEPS
    for key in ("model", "ema"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs"
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        for k in pa:
            assert torch.equal(pa[k], pb[k])
    drop_speed = lambda rows: [{k: v for k, v in r.items() if k != "img_per_s"} for r in rows]
    assert drop_speed(a["history"]) == drop_speed(b["history"])
    ref_csv = [ln.rsplit(",", 1)[0] for ln in (ref / "metrics.csv").read_text().splitlines()]
    cut_csv = [ln.rsplit(",", 1)[0] for ln in (cut / "metrics.csv").read_text().splitlines()]
    assert ref_csv == cut_csv


def test_resume_of_a_finished_run_does_nothing_unless_extended(capsys, tmp_path):
    out = tmp_path / "o"
    train(TrainConfig(output=str(out), epochs=1, batch_size=8, limit_train_batches=2, limit_val_batches=1))
    before = (out / "state.pt").read_bytes()
    code, stdout, _ = run_cli(capsys, "train", "--resume", out)
    assert code == 0 and "already complete" in stdout
    assert (out / "state.pt").read_bytes() == before
    code, stdout, err = run_cli(capsys, "train", "--resume", out, "--epochs", "2")
    assert code == 0, err
    assert [r["epoch"] for r in _state(out)["history"]] == [1, 2]
    assert "epochs: 2" in (out / "config.yaml").read_text()
