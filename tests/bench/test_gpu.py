"""On a CUDA device: CUDA-event timing and peak memory are recorded; an impossible batch is an OOM record."""

import pytest
import torch

from visionssm.bench import sweep
from visionssm.bench.profile import profile_model


@pytest.mark.gpu
def test_cuda_sweep_records_time_memory_and_oom():
    dev = torch.device("cuda")
    cases = sweep.plan(["vim_nano_patch4_32", "vit_tiny_patch16_224"], [32], [4], ["bf16"], ["infer", "train"],
                       "both", dev)
    huge = sweep.plan(["vit_tiny_patch16_224"], [4096], [4096], ["fp32"], ["infer"], "naive", dev)
    recs = sweep.run(cases + huge, dev, warmup=2, iters=5, max_time_s=0.5, progress=False)
    for r in recs[:-1]:
        assert r["status"] == "ok", r
        assert r["peak_mem_gib"] > 0 and r["median_ms"] > 0 and r["device"] == "cuda"
    assert recs[-1]["status"] == "oom"
    assert {r["scan_backend"] for r in recs if r["model"].startswith("vim")} == {"triton"}


@pytest.mark.gpu
def test_cuda_profile_rows_add_up():
    p = profile_model("vim_nano_patch4_32", batch=8, dtype="bf16", device="cuda", warmup=2, iters=3, ops=5)
    assert sum(r["ms"] for r in p["blocks"]) <= p["total_ms"] * 1.001
    assert p["flops_ops"]["selective_scan"] > 0 and len(p["top_ops"]) == 5
