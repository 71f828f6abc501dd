"""Vim's two scan directions: one bidirectional launch vs two selective_scan calls (ours) vs two calls of
mamba_ssm's selective_scan_fn on flipped copies (the official Vim recipe), when importable.

    python benchmarks/bench_bidir.py [--shapes 128,384,197,16 ...] [--out FILE]

Each direction has its own u, delta, A, B, C, D, delta_bias; z is shared (silu gate); bf16; outputs summed
(y_f + y_b) as the mixer does. Medians of triton.testing.do_bench, forward and forward+backward. Writes
benchmarks/results/bidir_<gpu>.json: device, date, records with shape, ms per path and ratios.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_scan import make_inputs, time_fn  # noqa: E402
from mamba_baseline import load_selective_scan_fn  # noqa: E402

from visionssm.ops.selective_scan import bidirectional_selective_scan, selective_scan  # noqa: E402

SHAPES = [(128, 384, 197, 16), (8, 384, 197, 16), (1, 384, 197, 16), (8, 384, 1025, 16)]
KEYS = ("u", "delta", "A", "B", "C", "D", "delta_bias")


def pair_inputs(batch, dim, length, nstate):
    f, b = make_inputs(batch, dim, length, nstate, torch.bfloat16), make_inputs(batch, dim, length, nstate,
                                                                               torch.bfloat16, seed=1)
    x = {f"{p}_{k}": src[k] for k in KEYS for p, src in (("f", f), ("b", b))}
    x["z"] = f["z"]
    return x


def one_launch(**a):
    p = lambda k: (a[f"f_{k}"], a[f"b_{k}"])
    return bidirectional_selective_scan(p("u"), p("delta"), p("A"), p("B"), p("C"), D=p("D"), z=a["z"],
                                        delta_bias=p("delta_bias"), delta_softplus=True).sum(1)


def two_calls(scan_fn=None):
    def fn(**a):
        ys = []
        for k, rev in (("f", False), ("b", True)):
            args = [a[f"{k}_{n}"] for n in ("u", "delta", "A", "B", "C", "D")]
            if scan_fn is None:
                ys.append(selective_scan(*args, z=a["z"], delta_bias=a[f"{k}_delta_bias"], delta_softplus=True,
                                         reverse=rev))
            else:  # official Vim: flip the backward branch's tensors, scan, flip back
                flip = (lambda t: t.flip(-1)) if rev else (lambda t: t)
                u, delta, A, B, C, D = args
                y = scan_fn(flip(u), flip(delta), A, flip(B), flip(C), D, flip(a["z"]), a[f"{k}_delta_bias"], True)
                ys.append(flip(y))
        return ys[0] + ys[1]
    return fn


def ratio(rec, key):
    """'fwd/fwd+bwd' speedup of the one-launch path over ``key``."""
    f = rec[f"{key}_fwd_ms"] / rec["ours_bidir_fwd_ms"]
    fb = rec[f"{key}_fwdbwd_ms"] / rec["ours_bidir_fwdbwd_ms"]
    return f"{f:5.2f}/{fb:5.2f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", nargs="*", default=None, help="batch,dim,L,N")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_bidir: needs a CUDA device")
    shapes = [tuple(int(v) for v in s.split(",")) for s in a.shapes] if a.shapes else SHAPES
    mamba = load_selective_scan_fn(verbose=False)
    gpu = torch.cuda.get_device_name()
    records = []
    print(f"{'shape':<22}{'one launch':>18}{'two calls':>18}{'ratio':>13}{'mamba x2':>18}{'ratio':>13}")
    for shape in shapes:
        x = pair_inputs(*shape)
        rec = {"shape": list(shape), "dtype": "bf16"}
        cells = []
        for name, fn in (("ours_bidir", one_launch), ("ours_two", two_calls()),
                         ("base_mamba_two", two_calls(mamba) if mamba is not None else None)):
            if fn is None:
                cells.append(f"{'-':>18}")
                continue
            f, fb = time_fn(fn, x, False), time_fn(fn, x, True)
            rec[f"{name}_fwd_ms"], rec[f"{name}_fwdbwd_ms"] = f, fb
            cells.append(f"{f:8.3f}/{fb:8.3f}")
        rec["speedup_vs_two_fwd"] = rec["ours_two_fwd_ms"] / rec["ours_bidir_fwd_ms"]
        rec["speedup_vs_two_fwdbwd"] = rec["ours_two_fwdbwd_ms"] / rec["ours_bidir_fwdbwd_ms"]
        if mamba is not None:
            rec["speedup_vs_mamba_fwd"] = rec["base_mamba_two_fwd_ms"] / rec["ours_bidir_fwd_ms"]
            rec["speedup_vs_mamba_fwdbwd"] = rec["base_mamba_two_fwdbwd_ms"] / rec["ours_bidir_fwdbwd_ms"]
        print(f"{str(shape):<22}{cells[0]}{cells[1]}{ratio(rec, 'ours_two'):>13}{cells[2]}"
              + (f"{ratio(rec, 'base_mamba_two'):>13}" if mamba is not None else ""), flush=True)
        records.append(rec)
    tag = gpu.lower().replace("nvidia", "").strip().split()[0]
    out = Path(a.out) if a.out else Path(__file__).parent / "results" / f"bidir_{tag}.json"
    out.write_text(json.dumps({"device": gpu, "date": datetime.date.today().isoformat(), "torch": torch.__version__,
                               "baseline_mamba_ssm": mamba is not None, "records": records}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
