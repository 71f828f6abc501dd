"""Inference throughput (img/s) and peak memory of the VMamba family vs timm Swin-T, in one run.

    python benchmarks/bench_vmamba.py [--batch 128] [--img-size 224] [--dtype bf16] [--models ...]
        [--reps 15] [--warmup 5] [--time-budget 190] [--no-baseline] [--cuda-graph] [--out FILE]

Every VMamba / MSVMamba / EfficientVMamba variant we register, at 224x224, batch 128, autocast bf16, eval and
inference_mode; each in NCHW and channels_last memory (the faster is the headline ``img_per_s``).
Baselines in the same run, in the same records:
  base_swin_*   timm ``swin_tiny_patch4_window7_224`` (the bar: VMamba-T[s1l8] >= 1.5x its img/s);
  base_mamba_*  the same VMamba model with mamba_ssm's CUDA ``selective_scan_fn`` as the scan backend
                (routes gathered into copies, scanned, scattered back: the official code's route handling),
                when mamba_ssm imports (benchmarks/mamba_baseline.py);
  ours_routed_* (headline model only) ours with VISIONSSM_CROSS_FUSED=0: the routed scan on an explicit
                delta tensor instead of the default inference cross scan that forms delta in the kernel.
Timing: per-iteration CUDA events after warm-up, median; peak memory = torch.cuda.max_memory_allocated.
``--cuda-graph`` adds each model (Swin-T too) replayed as one CUDA graph (graph_* keys): the GPU work
without the host's launch cost, on equal terms for both. The headline stays the eager number.
Writes benchmarks/results/vmamba_<gpu>.json (DESIGN.md format).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

import timm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import visionssm  # noqa: E402,F401  (registers our models)
import visionssm.layers.ss2d as ss2d  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
FAMILIES = ("vmamba", "msvmamba", "efficientvmamba")
HEADLINE = "vmamba_tiny_s1l8"
SWIN = "swin_tiny_patch4_window7_224"


def time_model(model, x, dtype, warmup: int, reps: int) -> tuple[float, float]:
    """(median ms per batch over ``reps`` CUDA-event-timed iterations after ``warmup``, peak GiB)."""
    amp = torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32)
    with torch.inference_mode(), amp:
        for _ in range(warmup):
            model(x)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
        for start, end in events:  # back to back, one sync at the end: the host never stalls the queue
            start.record()
            model(x)
            end.record()
        torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in events), torch.cuda.max_memory_allocated() / 2**30


def mamba_routed_scan(selective_scan_fn):
    """routed_selective_scan with the same contract, done the official way around mamba_ssm's kernel:
    gather every route into a copy, one selective_scan_fn call for all K routes, scatter-add back."""

    def routed(u, delta, A, B, C, index, D=None, delta_bias=None, delta_softplus=True, merge=True, out_dtype=None,
               backend=None, output_order="map"):
        if not merge and output_order != "route":
            raise NotImplementedError("baseline: merge=False only with output_order='route'")
        batch, kd, lmap = delta.shape
        K, lr = index.shape
        d = kd // K
        uk = u[:, None].expand(batch, K, d, lmap) if u.shape[1] == d else u.view(batch, K, d, lmap)
        xs = torch.stack([uk[:, k].index_select(-1, index[k]) for k in range(K)], 1).reshape(batch, kd, lr)
        dts = torch.stack([delta.view(batch, K, d, lmap)[:, k].index_select(-1, index[k]) for k in range(K)], 1)
        bs = torch.stack([B[:, k].index_select(-1, index[k]) for k in range(K)], 1)
        cs = torch.stack([C[:, k].index_select(-1, index[k]) for k in range(K)], 1)
        dtype = xs.dtype
        ys = selective_scan_fn(xs, dts.reshape(batch, kd, lr).to(dtype), A, bs.to(dtype), cs.to(dtype), D, None,
                               delta_bias, delta_softplus)
        if output_order == "route":  # MSVMamba's low branch: outputs per visit, in route order
            return ys.to(out_dtype or u.dtype)
        ys = ys.view(batch, K, d, lr).float()
        y = ys.new_zeros(batch, d, lmap)
        for k in range(K):
            y.index_add_(-1, index[k], ys[:, k])
        return y.to(out_dtype or u.dtype)

    return routed


@contextlib.contextmanager
def scan_backend(fn, cross_fused: bool | None = None):
    """Scans through fn. The fused inference cross scan bypasses routed_selective_scan: cross_fused turns it on
    or off (off for a foreign scan backend); None leaves the default."""
    saved, saved_env = ss2d.routed_selective_scan, os.environ.get("VISIONSSM_CROSS_FUSED")
    ss2d.routed_selective_scan = fn
    if cross_fused is not None:
        os.environ["VISIONSSM_CROSS_FUSED"] = "1" if cross_fused else "0"
    try:
        yield
    finally:
        ss2d.routed_selective_scan = saved
        if saved_env is None:
            del os.environ["VISIONSSM_CROSS_FUSED"]
        else:
            os.environ["VISIONSSM_CROSS_FUSED"] = saved_env


def time_model_graph(model, x, dtype, warmup: int, reps: int) -> tuple[float | None, str]:
    """(median ms per replay of one CUDA graph of model(x), "") or (None, why the capture failed).

    Eager timing includes the host's launch work wherever it outruns the GPU's; a graph replays the same
    kernels without it, so comparing both models graphed compares GPU work alone (equal terms)."""
    # No autocast cast cache: cached weight casts made outside the capture would be referenced by the graph.
    amp = torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32, cache_enabled=False)
    try:
        with torch.inference_mode(), amp:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up off the default stream, as capture requires
                for _ in range(max(warmup, 2)):
                    model(x)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                model(x)
            for _ in range(warmup):
                graph.replay()
            torch.cuda.synchronize()
            events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                      for _ in range(reps)]
            for start, end in events:
                start.record()
                graph.replay()
                end.record()
            torch.cuda.synchronize()
    except Exception as e:  # a host sync or an uncapturable op inside the forward: report, don't abort the run
        torch.cuda.synchronize()
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    return statistics.median(s.elapsed_time(e) for s, e in events), ""


def measure(name, x, dtype, a, formats=("nchw", "channels_last")) -> dict:
    model = timm.create_model(name).cuda().eval()
    rec = {"model": name, "params": sum(p.numel() for p in model.parameters())}
    for fmt in formats:
        mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
        model = model.to(memory_format=mf)
        ms, mem = time_model(model, x.contiguous(memory_format=mf), dtype, a.warmup, a.reps)
        rec[f"ours_{fmt}_ms"], rec[f"ours_{fmt}_img_per_s"], rec[f"ours_{fmt}_peak_gib"] = ms, a.batch / ms * 1e3, mem
    best = max(formats, key=lambda f: rec[f"ours_{f}_img_per_s"])
    rec.update(memory_format=best, median_ms=rec[f"ours_{best}_ms"], img_per_s=rec[f"ours_{best}_img_per_s"],
               peak_mem_gib=rec[f"ours_{best}_peak_gib"])
    if a.cuda_graph:
        mf = torch.channels_last if best == "channels_last" else torch.contiguous_format
        model = model.to(memory_format=mf)
        ms, why = time_model_graph(model, x.contiguous(memory_format=mf), dtype, a.warmup, a.reps)
        rec.update(graph_ms=ms, graph_img_per_s=a.batch / ms * 1e3 if ms else None, graph_error=why or None)
    return rec, model, best


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=None, help="default: every registered family variant")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--dtype", default="bf16", choices=list(DTYPES))
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--time-budget", type=float, default=190.0, help="seconds; later models are skipped past it")
    p.add_argument("--no-baseline", action="store_true", help="skip mamba_ssm (it may need minutes to build)")
    p.add_argument("--cuda-graph", action="store_true",
                   help="also time every model (Swin-T too) as one replayed CUDA graph: graph_* keys")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_vmamba: needs a CUDA device")
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # as VMamba's own bench
    dtype = DTYPES[a.dtype]
    names = a.models or [HEADLINE] + sorted(n for f in FAMILIES for n in timm.list_models(module=f) if n != HEADLINE)
    x = torch.randn(a.batch, 3, a.img_size, a.img_size, device="cuda")
    gpu = torch.cuda.get_device_name()

    selective_scan_fn = None
    if not a.no_baseline:
        from mamba_baseline import load_selective_scan_fn

        selective_scan_fn = load_selective_scan_fn(verbose=False)

    swin, swin_model, swin_fmt = measure(SWIN, x, dtype, a)  # Swin-T also gets its faster memory format
    swin_ms, swin_ips, swin_mem = swin["median_ms"], swin["img_per_s"], swin["peak_mem_gib"]
    del swin_model
    torch.cuda.empty_cache()
    print(f"{SWIN:<26}{swin_ms:9.2f} ms{swin_ips:9.0f} img/s{swin_mem:7.2f} GiB  {swin_fmt}"
          + (f"  graph {swin['graph_ms']:.2f} ms" if swin.get("graph_ms") else ""))

    tag = gpu.lower().replace("nvidia", "").strip().split()[0]
    out = Path(a.out) if a.out else Path(__file__).parent / "results" / f"vmamba_{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"device": gpu, "date": datetime.date.today().isoformat(), "torch": torch.__version__,
              "triton": __import__("triton").__version__, "timm": timm.__version__,
              "baseline_mamba_ssm": selective_scan_fn is not None, "records": []}
    records, t0 = result["records"], time.perf_counter()
    for name in names:
        if time.perf_counter() - t0 > a.time_budget:
            print(f"{name:<26}skipped: past the --time-budget of {a.time_budget:.0f} s")
            continue
        rec, model, fmt = measure(name, x, dtype, a)
        rec.update(batch=a.batch, img_size=a.img_size, dtype=a.dtype, base_swin_model=SWIN, base_swin_ms=swin_ms,
                   base_swin_memory_format=swin_fmt,
                   base_swin_img_per_s=swin_ips, base_swin_peak_gib=swin_mem,
                   speedup_vs_swin=rec["img_per_s"] / swin_ips)
        if rec.get("graph_ms") and swin.get("graph_ms"):
            rec.update(base_swin_graph_ms=swin["graph_ms"], graph_speedup_vs_swin=swin["graph_ms"] / rec["graph_ms"])
        line = (f"{name:<26}{rec['median_ms']:9.2f} ms{rec['img_per_s']:9.0f} img/s{rec['peak_mem_gib']:7.2f} GiB"
                f"  {fmt:<13} x{rec['speedup_vs_swin']:.2f} Swin-T")
        if rec.get("graph_speedup_vs_swin"):
            line += f"  graph {rec['graph_ms']:.2f} ms x{rec['graph_speedup_vs_swin']:.2f}"
        elif a.cuda_graph:
            line += f"  graph: {rec.get('graph_error')}"
        if name == HEADLINE:  # the same model on the routed scan (no fused cross scan): what the fusion is worth
            mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
            with scan_backend(ss2d.routed_selective_scan, cross_fused=False):
                ms, _ = time_model(model.to(memory_format=mf), x.contiguous(memory_format=mf), dtype, a.warmup,
                                   a.reps)
            rec.update(ours_routed_ms=ms, ours_routed_img_per_s=a.batch / ms * 1e3)
            line += f"  routed {rec['ours_routed_img_per_s']:.0f} img/s"
        if selective_scan_fn is not None:
            mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
            model = model.to(memory_format=mf)
            with scan_backend(mamba_routed_scan(selective_scan_fn), cross_fused=False):
                ms, mem = time_model(model, x.contiguous(memory_format=mf), dtype, a.warmup, a.reps)
            rec.update(base_mamba_ms=ms, base_mamba_img_per_s=a.batch / ms * 1e3, base_mamba_peak_gib=mem,
                       speedup_vs_mamba=rec["img_per_s"] / (a.batch / ms * 1e3))
            line += f"  mamba_ssm {rec['base_mamba_img_per_s']:.0f} img/s (x{rec['speedup_vs_mamba']:.2f})"
        print(line, flush=True)
        records.append(rec)
        out.write_text(json.dumps(result, indent=2) + "\n")  # after every model: a timeout keeps what is done
        del model
        torch.cuda.empty_cache()
    head = next((r for r in records if r["model"] == HEADLINE), None)
    if head is not None:
        verdict = "meets" if head["speedup_vs_swin"] >= 1.5 else "MISSES"
        print(f"{HEADLINE}: {head['speedup_vs_swin']:.2f}x Swin-T img/s -> {verdict} the 1.5x bar")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
