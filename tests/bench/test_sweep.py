"""Benchmark sweeps on CPU with tiny models: the JSON document, records, pairs, OOM and error handling, plots."""

import json

import pytest
import torch

from visionssm.bench import sweep
from visionssm.bench.plots import plot_all
from visionssm.bench.report import comparisons_table, records_table, write_json
from visionssm.bench.throughput import Case, Runner, auto_batch

CPU = torch.device("cpu")
RECORD_KEYS = {"model", "img_size", "batch", "dtype", "mode", "attention", "family", "params", "device",
               "scan_backend", "status", "error", "median_ms", "min_ms", "iters", "iqr_pct", "img_per_s",
               "peak_mem_gib"}


@pytest.fixture(scope="module")
def doc():
    torch.set_num_threads(1)
    models = ["vim_nano_patch4_32", "vit_tiny_patch16_224"]
    cases = sweep.plan(models, [32], [2], ["fp32"], ["infer", "train"], "both", CPU)
    records = sweep.run(cases, CPU, rounds=2, warmup=1, iters=2, max_time_s=0.5, progress=False)
    return sweep.result(records, CPU, {"note": "test"}, pairs=[("vim_nano_patch4_32", "vit_tiny_patch16_224")])


def test_plan_expands_attention_only_for_attention_models():
    cases = sweep.plan(["vim_nano_patch4_32", "vit_tiny_patch16_224"], [32, 64], ["auto", 3], ["fp32"], ["infer"],
                       "both", CPU)
    vim = [c for c in cases if c.model == "vim_nano_patch4_32"]
    vit = [c for c in cases if c.model == "vit_tiny_patch16_224"]
    assert {c.attention for c in vim} == {None} and {c.attention for c in vit} == {"sdpa", "naive"}
    assert len(vim) == 4 and len(vit) == 8  # 2 resolutions x (auto, 3) [x 2 attentions]
    assert {c.batch for c in vim if c.img_size == 32} == {auto_batch(32, CPU), 3}
    assert auto_batch(224, torch.device("cuda")) == 128 and auto_batch(1248, torch.device("cuda")) == 8


def test_json_schema(doc, tmp_path):
    assert {"device", "date", "torch", "triton", "records"} <= set(doc)
    assert doc["date"][:2] == "20" and doc["torch"] == torch.__version__
    assert len(doc["records"]) == 6  # vim x 2 modes + vit x 2 attentions x 2 modes
    for r in doc["records"]:
        assert set(r) >= RECORD_KEYS, RECORD_KEYS - set(r)
        assert r["status"] == "ok", r
        assert r["iters"] >= 3 * 2 and r["median_ms"] > 0  # >= 3 timed iterations per round, 2 rounds
        assert r["img_per_s"] == pytest.approx(r["batch"] / r["median_ms"] * 1e3)
        assert r["peak_mem_gib"] is None and r["device"] == "cpu"
    vim = [r for r in doc["records"] if r["model"] == "vim_nano_patch4_32"]
    assert {r["scan_backend"] for r in vim} == {"torch"} and vim[0]["params"] == 317_032
    assert {r["family"] for r in doc["records"]} == {"vim", "vision_transformer"}
    path = write_json(doc, tmp_path / "sub" / "bench_cpu.json")
    assert json.loads(path.read_text()) == json.loads(json.dumps(doc))


def test_comparisons_pair_equal_configs(doc):
    comps = doc["comparisons"]
    assert len(comps) == 4  # (infer, train) x (sdpa, naive)
    for c in comps:
        assert c["ours"] == "vim_nano_patch4_32" and c["base_attention"] in ("sdpa", "naive")
        assert c["speedup"] == pytest.approx(c["ours_img_per_s"] / c["base_img_per_s"])
        assert c["mem_ratio"] is None  # no memory figures on CPU
    assert "vit_tiny_patch16_224 (naive)" in comparisons_table(comps)
    assert "vim_nano_patch4_32" in records_table(doc["records"])


def test_plots_are_pngs(doc, tmp_path):
    paths = plot_all(doc["records"], tmp_path / "bench_cpu")
    assert [p.name for p in paths] == ["bench_cpu_throughput.png"]  # no memory plot without memory figures
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with_mem = [dict(r, peak_mem_gib=1.0 + i) for i, r in enumerate(doc["records"])]
    assert len(plot_all(with_mem, tmp_path / "mem")) == 2


class _Boom(torch.nn.Module):
    def __init__(self, exc):
        super().__init__()
        self.exc, self.w = exc, torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        raise self.exc


@pytest.mark.parametrize("exc, status", [(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9 GiB"), "oom"),
                                         (RuntimeError("shape mismatch\nsecond line"), "error: shape mismatch")])
def test_failures_are_recorded_not_raised(monkeypatch, exc, status):
    monkeypatch.setattr("visionssm.bench.throughput.build_model", lambda *a, **k: _Boom(exc))
    runner = Runner(CPU, warmup=1, iters=2)
    timing, st = runner.measure(Case("vim_nano_patch4_32", 32, 2, "fp32"))
    assert timing is None and st == status
    from visionssm.bench.throughput import record

    rec = record(Case("vim_nano_patch4_32", 32, 2, "fp32"), None, st, 1, CPU, None)
    assert rec["status"] == status.split(":")[0] and rec["img_per_s"] is None
    assert rec["error"] == (None if status == "oom" else "shape mismatch")


def test_interrupt_keeps_measured_cases(monkeypatch):
    """A KeyboardInterrupt (Ctrl-C, or SIGTERM from `timeout`) ends the sweep; what ran is kept."""
    from visionssm.bench import throughput

    real = throughput.Runner.measure
    calls = []

    def measure(self, case):
        calls.append(case)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, case)

    monkeypatch.setattr(throughput.Runner, "measure", measure)
    cases = sweep.plan(["vim_nano_patch4_32"], [32, 48, 64], [2], ["fp32"], ["infer"], "both", CPU)
    recs = sweep.run(cases, CPU, warmup=1, iters=1, max_time_s=0.1, progress=False)
    assert [r["status"] for r in recs] == ["ok", "skipped", "skipped"]
