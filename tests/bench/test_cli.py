"""`visionssm bench` / `visionssm profile` from the command line: outputs and one-line errors."""

import json

import pytest
import torch

from visionssm.cli import main


def _cli(capsys, *args):
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_lists_bench_and_profile(capsys):
    code, out, _ = _cli(capsys, "--help")
    assert code == 0 and "bench" in out and "profile" in out
    code, out, _ = _cli(capsys, "bench", "--help")
    for flag in ("--res", "--batch", "--dtype", "--mode", "--attention", "--device", "--threads", "--out",
                 "--rounds", "--compare"):
        assert flag in out, flag


def test_bench_writes_json_and_plot(capsys, tmp_path):
    out = tmp_path / "results" / "bench_cpu.json"
    code, stdout, err = _cli(capsys, "bench", "vim_nano_patch4_32", "vit_tiny_patch16_224", "--device", "cpu",
                             "--threads", "1", "--res", "32", "--batch", "2", "--warmup", "1", "--iters", "1",
                             "--rounds", "1", "--max-time", "0.2", "--attention", "naive", "--out", out,
                             "--compare", "vim_nano_patch4_32:vit_tiny_patch16_224", "--no-progress")
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert [(r["model"], r["attention"]) for r in doc["records"]] == [
        ("vim_nano_patch4_32", None), ("vit_tiny_patch16_224", "naive")]
    assert doc["settings"]["threads"] == 1 and doc["comparisons"][0]["base_attention"] == "naive"
    assert (tmp_path / "results" / "bench_cpu_throughput.png").exists()
    assert "img/s" in stdout and "speedup" in stdout and str(out) in stdout


@pytest.mark.parametrize("args, culprit", [
    (["bench", "vim_tiny_nonexistent", "--device", "cpu"], "unknown model 'vim_tiny_nonexistent'"),
    (["profile", "no_such_model"], "unknown model 'no_such_model'"),
    (["bench", "--batch", "zero"], "argument --batch"),
    (["bench", "--res", "-5"], "argument --res"),
    (["bench", "--dtype", "fp8"], "argument --dtype"),
    (["bench", "--compare", "vim_nano_patch4_32"], "argument --compare"),
    (["bench", "vim_nano_patch4_32", "--device", "tpu"], "--device"),
])
def test_errors_are_one_line(capsys, args, culprit):
    code, _, err = _cli(capsys, *args)
    assert code == 2 and err.count("\n") == 1 and err.startswith("visionssm: error:") and culprit in err, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_request_without_cuda(capsys):
    code, _, err = _cli(capsys, "bench", "vim_nano_patch4_32", "--device", "cuda")
    assert code == 2 and err.count("\n") == 1 and "CUDA is not available" in err


def test_profile_prints_table_and_json(capsys, tmp_path):
    code, out, err = _cli(capsys, "profile", "vim_nano_patch4_32", "--device", "cpu", "--threads", "1",
                          "--warmup", "1", "--iters", "1", "--ops", "0", "--json", tmp_path / "p.json")
    assert code == 0, err
    assert "317,032 params" in out and "selective_scan" in out and "layers.5" in out and "total" in out
    p = json.loads((tmp_path / "p.json").read_text())
    assert p["flops"] == p["flops_aten"] + sum(p["flops_ops"].values())
