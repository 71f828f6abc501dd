"""Arguments and entry points of `visionssm bench` and `visionssm profile` (wired into visionssm.cli)."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

import torch

from visionssm.train.errors import UserError

from .throughput import DTYPES, MODES


def _batch(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        b = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"batch must be a positive integer or 'auto', got {value!r}") from None
    if b <= 0:
        raise argparse.ArgumentTypeError(f"batch must be > 0, got {b}")
    return b


def _positive(value: str) -> int:
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _pair(value: str) -> tuple[str, str]:
    ours, sep, base = value.partition(":")
    if not sep or not ours or not base:
        raise argparse.ArgumentTypeError(f"--compare takes OURS:BASE, got {value!r}")
    return ours, base


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help="timm model names, ours or timm's (default: Vim-T/S, DeiT-T/S on GPU; Vim-T, DeiT-T on CPU)")
    p.add_argument("--res", nargs="+", type=_positive, default=None, metavar="PX",
                   help="resolutions (default: 224 512 768 1024 1248 2048 on GPU, 224 on CPU)")
    p.add_argument("--batch", nargs="+", type=_batch, default=["auto"],
                   help="batch sizes or 'auto' (GPU: 128 at 224, 32 at 512, 16 at 768, 8 from 1024; CPU: 8 at 224)")
    p.add_argument("--dtype", nargs="+", choices=list(DTYPES), default=None,
                   help="autocast dtypes (default: bf16 on GPU, fp32 on CPU)")
    p.add_argument("--mode", nargs="+", choices=list(MODES), default=["infer"],
                   help="infer (forward) and/or train (forward + backward + AdamW step)")
    p.add_argument("--attention", choices=("both", "sdpa", "naive", "default"), default="both",
                   help="attention of timm models: SDPA and naive (both), one of them, or as timm builds it")
    p.add_argument("--device", default="auto", help="auto | cuda | cuda:N | cpu")
    p.add_argument("--threads", type=_positive, default=None, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--warmup", type=_positive, default=5, help="warm-up iterations per case")
    p.add_argument("--iters", type=_positive, default=30, help="timed iterations per case (at most)")
    p.add_argument("--max-time", type=float, default=5.0, metavar="S",
                   help="seconds of timed iterations per case and round (at least 3 iterations run)")
    p.add_argument("--rounds", type=_positive, default=None,
                   help="repeat the case list round-robin and pool the times (default: 1 on GPU, 3 on CPU)")
    p.add_argument("--budget", type=float, default=None, metavar="S",
                   help="start no new case after S seconds; the rest are recorded as skipped")
    p.add_argument("--compare", type=_pair, action="append", default=None, metavar="OURS:BASE",
                   help="extra (ours, baseline) pair for the speedup table (Vim/DeiT, VMamba/Swin are built in)")
    p.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/bench_<device>.json)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots next to the JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_profile_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="a timm model name, ours or timm's")
    p.add_argument("--res", type=_positive, default=None, metavar="PX", help="resolution (default: the model's)")
    p.add_argument("--batch", type=_positive, default=1)
    p.add_argument("--dtype", choices=list(DTYPES), default=None, help="autocast dtype (default: bf16 GPU, fp32 CPU)")
    p.add_argument("--device", default="auto", help="auto | cuda | cuda:N | cpu")
    p.add_argument("--threads", type=_positive, default=None, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--warmup", type=_positive, default=3)
    p.add_argument("--iters", type=_positive, default=10)
    p.add_argument("--ops", type=int, default=15, metavar="N", help="also list the top N ops by self time (0: off)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the profile as JSON")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device: unknown device {name!r} (auto, cuda, cuda:N or cpu)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    if device.type not in ("cuda", "cpu"):
        raise UserError(f"--device: only cuda and cpu are supported, got {name!r}")
    return device


def check_models(names) -> None:
    import timm

    import visionssm.models  # noqa: F401  (registers ours)

    for name in names:
        if not timm.is_model(name):
            close = timm.list_models(f"*{name.split('_')[0]}*")[:5] if name else []
            hint = f"; similar: {', '.join(close)}" if close else "; `visionssm models` lists ours"
            raise UserError(f"unknown model {name!r}{hint}")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def run_bench(args) -> int:
    from . import sweep
    from .plots import plot_all
    from .report import comparisons_table, records_table, write_json

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = device.type == "cpu"
    models = args.models or list(sweep.CPU_MODELS if cpu else sweep.GPU_MODELS)
    check_models(models)
    if args.max_time <= 0:
        raise UserError(f"--max-time must be > 0, got {args.max_time}")
    pairs = tuple(args.compare or ()) + sweep.PAIRS
    if args.compare:
        check_models(n for pair in args.compare for n in pair)
    res = args.res or list(sweep.CPU_RESOLUTIONS if cpu else sweep.GPU_RESOLUTIONS)
    dtypes = args.dtype or (["fp32"] if cpu else ["bf16"])
    rounds = args.rounds or (3 if cpu else 1)
    cases = sweep.plan(models, res, args.batch, dtypes, args.mode, args.attention, device)
    # `timeout` and schedulers send SIGTERM: end the sweep like Ctrl-C, so the JSON of what ran is written.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    records = sweep.run(cases, device, rounds=rounds, warmup=args.warmup, iters=args.iters,
                        max_time_s=args.max_time, progress=not args.no_progress, budget_s=args.budget)
    settings = {"models": models, "resolutions": res, "batch": args.batch, "dtypes": dtypes, "modes": args.mode,
                "attention": args.attention, "warmup": args.warmup, "iters": args.iters, "max_time_s": args.max_time,
                "rounds": rounds, "budget_s": args.budget, "threads": torch.get_num_threads() if cpu else None}
    doc = sweep.result(records, device, settings, pairs)
    out = Path(args.out) if args.out else Path("benchmarks/results") / f"bench_{sweep.device_tag(device)}.json"
    print(f"{doc['device']}, torch {doc['torch']}, {doc['date']}")
    print(records_table(records))
    if doc["comparisons"]:
        print("\n" + comparisons_table(doc["comparisons"]))
    write_json(doc, out)
    written = [out]
    if not args.no_plots:
        written += plot_all(records, out.with_suffix(""), title=doc["device"])
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


def run_profile(args) -> int:
    import json

    from .profile import format_profile, profile_model
    from .report import write_json

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    check_models([args.model])
    if args.ops < 0:
        raise UserError(f"--ops must be >= 0, got {args.ops}")
    dtype = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    try:
        p = profile_model(args.model, args.res, args.batch, dtype, device, args.warmup, args.iters, args.ops)
    except torch.OutOfMemoryError:
        raise UserError(f"{args.model} at {args.res}px, batch {args.batch}: out of device memory") from None
    print(format_profile(p))
    if args.json:
        write_json(json.loads(json.dumps(p)), args.json)
        print(f"\nwrote {args.json}")
    return 0
