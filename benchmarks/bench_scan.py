"""GPU benchmark of the selective scan: ours (Triton) vs mamba_ssm's CUDA selective_scan_fn vs our torch path.

    python benchmarks/bench_scan.py [--dtype bf16] [--shapes 128,384,197,16 ...] [--no-torch]

Times are medians of triton.testing.do_bench (CUDA events), forward and forward+backward, with z gate,
D skip, delta_bias and softplus (the Vim/Mamba configuration); each is the median of --repeats (3) such
runs, ours and mamba_ssm alternating, and every run's median is kept in the JSON (with their minimum,
``*_best_ms``). Wall time includes the host's time to issue the work: where that exceeds the GPU's, it is
what is measured. So each record also has the GPU time per call (``*_device_ms``: the sum of the kernels'
durations under torch.profiler, mean of 10 calls) and the ratios of those. Effective GB/s counts each input
read once and each output written once; copy_gbps is a device-to-device copy measured in the same run.
Writes benchmarks/results/scan_<gpu>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from pathlib import Path

import torch
import triton
from triton.testing import do_bench

sys.path.insert(0, str(Path(__file__).parent))
from mamba_baseline import load_selective_scan_fn  # noqa: E402

from visionssm.ops.selective_scan import selective_scan  # noqa: E402

SHAPES = [(128, 384, 197, 16), (32, 768, 197, 16), (8, 384, 6085, 16), (1, 384, 50177, 16), (64, 384, 3136, 1)]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def make_inputs(batch, dim, length, nstate, dtype, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *s, dt=dtype: torch.randn(*s, generator=g, device="cuda", dtype=torch.float32).to(dt)
    return dict(
        u=r(batch, dim, length), delta=(r(batch, dim, length, dt=torch.float32) * 0.5 - 1).to(dtype),
        A=-(torch.rand(dim, nstate, generator=g, device="cuda") * 4 + 0.5),
        B=r(batch, nstate, length), C=r(batch, nstate, length), D=r(dim, dt=torch.float32),
        z=r(batch, dim, length), delta_bias=r(dim, dt=torch.float32) * 0.5,
    )


def io_bytes(batch, dim, length, nstate, itemsize):
    big, bc = batch * dim * length * itemsize, batch * nstate * length * itemsize
    fwd = 4 * big + 2 * bc  # u, delta, z in; out
    bwd = 7 * big + 4 * bc  # u, delta, z, dout in; du, ddelta, dz out; B, C in; dB, dC out
    return fwd, fwd + bwd


def copy_bandwidth_gbps():
    x = torch.empty(1 << 28, dtype=torch.float32, device="cuda")  # 1 GiB
    y = torch.empty_like(x)
    ms = do_bench(lambda: y.copy_(x), warmup=25, rep=200, return_mode="median")
    return 2 * x.numel() * 4 / (ms * 1e-3) / 1e9


def time_fn(fn, inputs, backward):
    leaves = {k: v.detach().clone().requires_grad_(backward) for k, v in inputs.items()}
    if backward:
        out = fn(**leaves)
        grad = torch.randn_like(out)

        def step():
            o = fn(**leaves)
            o.backward(grad)
    else:

        def step():
            with torch.no_grad():
                fn(**leaves)

    return do_bench(step, warmup=25, rep=200, return_mode="median", grad_to_none=list(leaves.values()))


def kernel_times_ms(fn, inputs, backward, reps=10, keep_grads=False):
    """GPU time of one call (forward, or forward+backward) by kernel name (torch.profiler), mean over ``reps``
    calls. Host time and the gaps between kernels are not in it. ``keep_grads``: the leaves' grads accumulate
    from call to call (their add kernels are counted) instead of being reset to None as do_bench does."""
    from torch.profiler import ProfilerActivity, profile

    leaves = {k: v.detach().clone().requires_grad_(backward) for k, v in inputs.items()}
    grad = torch.randn_like(inputs["u"])

    def step():
        if backward:
            fn(**leaves).backward(grad)
            if not keep_grads:
                for v in leaves.values():
                    v.grad = None
        else:
            with torch.no_grad():
                fn(**leaves)

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            step()
        torch.cuda.synchronize()
    per = {}
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            per[e.name] = per.get(e.name, 0.0) + e.device_time / reps / 1e3
    return per


def device_ms(fn, inputs, backward, reps=10):
    """GPU time of one call: the kernels' durations summed (see kernel_times_ms)."""
    return sum(kernel_times_ms(fn, inputs, backward, reps).values())


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dtype", default="bf16", choices=list(DTYPES))
    p.add_argument("--shapes", nargs="*", default=None, help="batch,dim,L,N entries")
    p.add_argument("--no-torch", action="store_true", help="skip our pure-PyTorch path (slow at long L)")
    p.add_argument("--torch-max-len", type=int, default=8192)
    p.add_argument("--out", default=None)
    p.add_argument("--repeats", type=int, default=3, help="do_bench runs per implementation (median of medians)")
    a = p.parse_args()
    shapes = [tuple(int(v) for v in s.split(",")) for s in a.shapes] if a.shapes else SHAPES
    dtype = DTYPES[a.dtype]
    base = load_selective_scan_fn(verbose=False)
    ours = lambda **kw: selective_scan(**kw, delta_softplus=True, backend="triton")
    torch_path = lambda **kw: selective_scan(**kw, delta_softplus=True, backend="torch")
    baseline = (lambda **kw: base(**kw, delta_softplus=True)) if base is not None else None
    copy_gbps = copy_bandwidth_gbps()
    dev = torch.cuda.get_device_name()
    records = []
    for shape in shapes:
        x = make_inputs(*shape, dtype)
        rec = {"shape": list(shape), "dtype": a.dtype}
        for mode, bwd in (("fwd", False), ("fwdbwd", True)):
            # Ours and the baseline alternate, a.repeats times each; the record keeps every run's median and
            # their median. Short problems are host-bound for us, and that machine's host time drifts.
            runs = {"ours": [], "base": []}
            for _ in range(a.repeats):
                runs["ours"].append(time_fn(ours, x, bwd))
                if baseline:
                    runs["base"].append(time_fn(baseline, x, bwd))
            for who, ms in runs.items():
                rec[f"{who}_{mode}_runs_ms"] = ms or None
                rec[f"{who}_{mode}_ms"] = statistics.median(ms) if ms else None
                rec[f"{who}_{mode}_best_ms"] = min(ms) if ms else None
            run_torch = not a.no_torch and shape[2] <= a.torch_max_len
            rec[f"torch_{mode}_ms"] = time_fn(torch_path, x, bwd) if run_torch else None
            if rec[f"base_{mode}_ms"]:
                rec[f"speedup_vs_base_{mode}"] = rec[f"base_{mode}_ms"] / rec[f"ours_{mode}_ms"]
                rec[f"speedup_vs_base_{mode}_best"] = rec[f"base_{mode}_best_ms"] / rec[f"ours_{mode}_best_ms"]
        fwd_b, all_b = io_bytes(*shape, torch.finfo(dtype).bits // 8)
        rec["ours_fwd_gbps"] = fwd_b / (rec["ours_fwd_ms"] * 1e-3) / 1e9
        rec["ours_fwdbwd_gbps"] = all_b / (rec["ours_fwdbwd_ms"] * 1e-3) / 1e9
        rec["copy_gbps"] = copy_gbps
        rec["ours_fwd_copy_fraction"] = rec["ours_fwd_gbps"] / copy_gbps
        records.append(rec)
        del x
        torch.cuda.empty_cache()
    # GPU times after all wall times: profiling is kept out of the wall-time runs
    for rec in records:
        x = make_inputs(*rec["shape"], dtype)
        for mode, bwd in (("fwd", False), ("fwdbwd", True)):
            rec[f"ours_{mode}_device_ms"] = device_ms(ours, x, bwd)
            rec[f"base_{mode}_device_ms"] = device_ms(baseline, x, bwd) if baseline else None
            if baseline:
                rec[f"speedup_vs_base_{mode}_device"] = rec[f"base_{mode}_device_ms"] / rec[f"ours_{mode}_device_ms"]
        del x
    result = {
        "device": dev, "date": datetime.date.today().isoformat(), "torch": torch.__version__,
        "triton": triton.__version__, "baseline": "mamba_ssm 2.3.2.post1 selective_scan_fn" if base else None,
        "config": "z gate, D, delta_bias, softplus; B/C per token (1 group)", "records": records,
    }
    fmt = lambda v: f"{v:9.3f}" if v is not None else f"{'-':>9}"
    ratio = lambda a_, b_: f"{b_ / a_:6.2f}x" if b_ else f"{'-':>7}"
    print(f"{dev}  {a.dtype}  copy bandwidth {copy_gbps:.0f} GB/s  (ms, median of {a.repeats} do_bench medians)")
    print(f"{'shape (B,D,L,N)':<24}{'ours fwd':>9}{'mamba':>9}{'ratio':>8}{'torch':>9} |"
          f"{'ours f+b':>9}{'mamba':>9}{'ratio':>8}{'torch':>9} | {'GB/s fwd':>8}")
    for r in records:
        print(f"{str(tuple(r['shape'])):<24}{fmt(r['ours_fwd_ms'])}{fmt(r['base_fwd_ms'])}"
              f"{ratio(r['ours_fwd_ms'], r['base_fwd_ms']):>8}{fmt(r['torch_fwd_ms'])} |"
              f"{fmt(r['ours_fwdbwd_ms'])}{fmt(r['base_fwdbwd_ms'])}"
              f"{ratio(r['ours_fwdbwd_ms'], r['base_fwdbwd_ms']):>8}"
              f"{fmt(r['torch_fwdbwd_ms'])} | {r['ours_fwd_gbps']:8.0f}")
    print("GPU time per call (kernels only, torch.profiler; ms) and the ratio of those:")
    print(f"{'shape (B,D,L,N)':<24}{'ours fwd':>9}{'mamba':>9}{'ratio':>8} |{'ours f+b':>9}{'mamba':>9}{'ratio':>8}")
    for r in records:
        print(f"{str(tuple(r['shape'])):<24}{fmt(r['ours_fwd_device_ms'])}{fmt(r['base_fwd_device_ms'])}"
              f"{ratio(r['ours_fwd_device_ms'], r['base_fwd_device_ms']):>8} |{fmt(r['ours_fwdbwd_device_ms'])}"
              f"{fmt(r['base_fwdbwd_device_ms'])}{ratio(r['ours_fwdbwd_device_ms'], r['base_fwdbwd_device_ms']):>8}")
    gpu = dev.lower().replace("nvidia", "").strip().split()[0]
    out = Path(a.out) if a.out else Path(__file__).parent / "results" / f"scan_{gpu}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
