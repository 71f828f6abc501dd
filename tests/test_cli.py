"""`visionssm` command line: parsing, one-line errors, models table, eval and predict on a tiny run."""

from __future__ import annotations

import numpy as np
import pytest
import timm
from PIL import Image

import visionssm  # noqa: F401
from visionssm.cli import main
from visionssm.train import TrainConfig, train
from visionssm.train.config import DEFAULT_MODEL


def _cli(capsys, *args):
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _save_png(image, path):
    Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    train(TrainConfig(output=str(out), epochs=1, batch_size=16, limit_train_batches=4, limit_val_batches=2))
    return out


def test_default_model_is_registered():
    assert timm.is_model(DEFAULT_MODEL)
    assert TrainConfig().model == DEFAULT_MODEL


def test_help_lists_subcommands_and_flags(capsys):
    code, out, _ = _cli(capsys, "--help")
    assert code == 0 and all(c in out for c in ("train", "eval", "predict", "models"))
    code, out, _ = _cli(capsys, "train", "--help")
    for flag in ("--model", "--data", "--epochs", "--batch-size", "--lr", "--seed", "--output", "--resume",
                 "--amp", "--device", "--save-every-steps", "--overwrite", "--skip-corrupt"):
        assert flag in out, flag


def test_usage_errors_are_one_line(capsys):
    code, _, err = _cli(capsys, "train", "--amp", "fp8")
    assert code == 2 and err.count("\n") == 1 and err.startswith("visionssm: error: argument --amp")
    code, _, err = _cli(capsys, "train", "--epochs", "many")
    assert code == 2 and err.count("\n") == 1 and "--epochs" in err
    code, _, err = _cli(capsys, "train", "--epochs", "0")
    assert code == 2 and err.strip() == "visionssm: error: --epochs must be > 0, got 0"


def test_models_table(capsys):
    code, out, _ = _cli(capsys, "models", "--filter", "nano")
    assert code == 0
    header, _, *rows = out.splitlines()
    assert header.split()[:5] == ["name", "params", "FLOPs", "res", "family"]
    row = next(r for r in rows if r.split() and r.split()[0] == DEFAULT_MODEL)  # other families have nanos too
    assert row.split()[0] == DEFAULT_MODEL and "vim" in row.split() and "2401.09417" in row


def test_flops_include_the_scan():
    from visionssm.train.summary import count_flops

    model = timm.create_model(DEFAULT_MODEL)
    total = count_flops(model, (3, 32, 32))
    # 6 blocks x 2 directions, L = 65 tokens, d_inner = 128, N = 16: 9*L*D*N + 2*L*D each
    scans = 6 * 2 * (9 * 65 * 128 * 16 + 2 * 65 * 128)
    assert total > scans
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model.eval()(__import__("torch").zeros(1, 3, 32, 32))
    assert total - scans < counter.get_total_flops()  # the real scan's own ops are not double counted


def test_eval_writes_confusion(capsys, run_dir, tmp_path):
    code, out, err = _cli(capsys, "eval", "--checkpoint", run_dir / "best.safetensors", "--output", tmp_path)
    assert code == 0, err
    assert "top1" in out and "top5" in out and "(360 images)" in out
    assert (tmp_path / "confusion.png").stat().st_size > 1000


def test_eval_on_image_folder(capsys, run_dir, tmp_path):
    from visionssm.train.data import DigitsDataset

    val = DigitsDataset("val")
    for i in range(6):
        folder = tmp_path / "imgs" / "val" / str(val.targets[i])
        folder.mkdir(parents=True, exist_ok=True)
        _save_png(val.images[i], folder / f"{i}.png")
    last = run_dir / "last.safetensors"
    code, out, err = _cli(capsys, "eval", "--checkpoint", last, "--data", tmp_path / "imgs",
                          "--output", tmp_path)
    assert code == 0, err
    assert "(6 images)" in out


def test_predict_prints_topk(capsys, run_dir, tmp_path):
    from visionssm.train.data import DigitsDataset

    val = DigitsDataset("val")
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"digit{i}.png")
        _save_png(val.images[i], paths[-1])
    best = run_dir / "best.safetensors"
    code, out, err = _cli(capsys, "predict", "--checkpoint", best, "--topk", "3", *paths)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2
    for path, line in zip(paths, lines):
        name, _, rest = line.partition(": ")
        assert name == str(path)
        probs = [float(p) for p in rest.replace(",", "").split()[1::2]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


def test_predict_names_a_bad_image(capsys, run_dir, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    code, _, err = _cli(capsys, "predict", "--checkpoint", run_dir / "best.safetensors", bad)
    assert code == 2 and err.count("\n") == 1 and f"corrupt image {bad}" in err


def test_models_and_profile_count_flops_alike_for_routed_scans():
    # `visionssm models` and `visionssm profile` share one accounting: aten matmuls/convs plus our ops' own
    # counts (routed scans included), with the aten ops inside our ops left out.
    import torch

    from visionssm.bench.profile import count_flops as profile_flops
    from visionssm.models.vmamba import VMamba
    from visionssm.train.summary import count_flops

    model = VMamba(depths=(1, 1, 2, 1), dims=16, num_classes=10)
    got = profile_flops(model, 32, torch.device("cpu"))
    assert got["ops"]["selective_scan"] > 0
    assert count_flops(model, (3, 32, 32)) == got["total"]
