"""`visionssm profile MODEL`: parameters, FLOPs (scans included) and where the time goes, per top-level block.

FLOPs of one image: ``torch.utils.flop_counter.FlopCounterMode`` (2 per multiply-add of matmuls, convolutions
and attention; attention is counted through its naive matmuls, which the counter always sees) plus our ops,
which run as custom kernels or elementwise recurrences the counter cannot see: each public op reports its
analytic count to ``visionssm.ops._flops`` (selective scan: 9·B·L·D·N + B·D·L for D + B·D·L for the gate);
aten ops inside such an op (the matmuls of a torch path) are not counted a second time.
Both are split per top-level block: the counter's per-module table, and the op counts read in forward hooks.

Time: forward hooks on the top-level blocks (children of the model, with ModuleList / Sequential containers
opened one level: ``layers.0``, ``blocks.3``, ``stages.1``), CUDA events on GPU and ``perf_counter`` on CPU;
all numbers come from the iteration with the median total time. Time outside those blocks (token insertion,
position embedding, pooling) is the "(outside blocks)" row, so the rows add up to the measured forward time.
``ops=N`` adds torch.profiler's top-N aten ops by self time.
"""

from __future__ import annotations

import time
from collections import defaultdict

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from visionssm.ops import _flops

from .attention import attention_impl, has_attention, set_attention
from .throughput import DTYPES, build_model


def top_level_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Children of the model; a ModuleList / Sequential child is replaced by its own children."""
    out = []
    for name, child in model.named_children():
        if isinstance(child, (nn.ModuleList, nn.Sequential)) and len(child) > 0:
            out.extend((f"{name}.{n}", c) for n, c in child.named_children())
        else:
            out.append((name, child))
    return out


def count_flops(model: nn.Module, img_size: int, device: torch.device) -> dict:
    """FLOPs of one image: {"total", "aten", "ops": {op: n}, "blocks": {block: n}} (see module docstring)."""
    blocks = top_level_blocks(model)
    root = type(model).__name__
    op_by_block: dict[str, int] = defaultdict(int)
    impl = attention_impl(model)
    if has_attention(model):
        set_attention(model, "naive")
    x = torch.zeros(1, 3, img_size, img_size, device=device)
    counter = FlopCounterMode(display=False)
    handles = []
    with _flops.count_op_flops() as ops:
        def pre(name):
            return lambda mod, args: op_by_block.__setitem__(name, op_by_block[name] - sum(ops.values()))

        def post(name):
            return lambda mod, args, out: op_by_block.__setitem__(name, op_by_block[name] + sum(ops.values()))

        for name, mod in blocks:
            handles.append(mod.register_forward_pre_hook(pre(name)))
            handles.append(mod.register_forward_hook(post(name)))
        try:
            with torch.no_grad(), _flops.hidden_inside_ops(counter), counter:
                model.eval()(x)
        finally:
            for h in handles:
                h.remove()
            if impl in ("sdpa", "naive"):
                set_attention(model, impl)
        ops = dict(ops)
    per_module = counter.get_flop_counts()
    aten_blocks = {name: sum(per_module.get(f"{root}.{name}", {}).values()) for name, _ in blocks}
    aten = counter.get_total_flops()
    return {
        "total": aten + sum(ops.values()),
        "aten": aten,
        "ops": ops,
        "blocks": {name: aten_blocks[name] + op_by_block.get(name, 0) for name, _ in blocks},
    }


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_blocks(model: nn.Module, x: torch.Tensor, dtype: torch.dtype, warmup: int, iters: int) -> dict:
    """Forward ms of the median iteration, whole and per top-level block: {"total_ms", "blocks": {name: ms}}."""
    device = x.device
    cuda = device.type == "cuda"
    blocks = top_level_blocks(model)
    marks: dict[str, list] = defaultdict(list)  # name -> [start, end] pairs of the current iteration
    clock = (lambda: torch.cuda.Event(enable_timing=True)) if cuda else None

    def stamp():
        if cuda:
            e = clock()
            e.record()
            return e
        return time.perf_counter()

    def pre(name):
        return lambda mod, args: marks[name].append([stamp(), None])

    def post(name):
        def hook(mod, args, out):
            marks[name][-1][1] = stamp()
        return hook

    handles = [h for name, mod in blocks
               for h in (mod.register_forward_pre_hook(pre(name)), mod.register_forward_hook(post(name)))]
    amp = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    per_block: dict[str, list[float]] = defaultdict(list)
    totals = []
    try:
        with torch.inference_mode(), amp:
            for it in range(warmup + iters):
                marks.clear()
                _sync(device)
                start = stamp()
                model(x)
                end = stamp()
                _sync(device)
                if it < warmup:
                    continue
                elapsed = (lambda a, b: a.elapsed_time(b)) if cuda else (lambda a, b: (b - a) * 1e3)
                totals.append(elapsed(start, end))
                for name, pairs in marks.items():
                    per_block[name].append(sum(elapsed(a, b) for a, b in pairs))
    finally:
        for h in handles:
            h.remove()
    # The iteration with the median total, all parts from that same iteration: the rows add up exactly.
    mid = sorted(range(len(totals)), key=totals.__getitem__)[(len(totals) - 1) // 2]
    return {"total_ms": totals[mid], "iters_total_ms": totals,
            "blocks": {name: per_block[name][mid] for name, _ in blocks if name in per_block}}


def top_ops(model: nn.Module, x: torch.Tensor, dtype: torch.dtype, n: int) -> list[dict]:
    """torch.profiler's top-n aten ops by self time (CPU time, plus device time on CUDA) of one forward."""
    from torch.profiler import ProfilerActivity, profile

    cuda = x.device.type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    amp = torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32)
    with torch.inference_mode(), amp:
        model(x)
        _sync(x.device)
        with profile(activities=acts) as prof:
            model(x)
            _sync(x.device)
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key, 0), reverse=True)[:n]
    return [{"op": e.key, "self_ms": getattr(e, key, 0) / 1e3, "calls": e.count} for e in events]


def profile_model(name: str, img_size: int | None = None, batch: int = 1, dtype: str = "fp32",
                  device: torch.device | str = "cpu", warmup: int = 3, iters: int = 10, ops: int = 0) -> dict:
    """Everything `visionssm profile` prints, as a dict."""
    device = torch.device(device)
    if img_size is None:
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(name, allow_unregistered=True)
        img_size = cfg.input_size[-1] if cfg is not None else 224
    model = build_model(name, img_size, device)
    params = {bname: sum(p.numel() for p in mod.parameters()) for bname, mod in top_level_blocks(model)}
    flops = count_flops(model, img_size, device)
    x = torch.randn(batch, 3, img_size, img_size, device=device)
    timing = time_blocks(model, x, DTYPES[dtype], warmup, iters)
    rows = []
    for bname, mod in top_level_blocks(model):
        if bname not in timing["blocks"]:
            continue  # never called in forward (e.g. a head that forward_features skips)
        rows.append({"name": bname, "type": type(mod).__name__, "params": params[bname],
                     "flops": flops["blocks"][bname], "ms": timing["blocks"][bname]})
    outside = timing["total_ms"] - sum(r["ms"] for r in rows)
    return {
        "model": name, "img_size": img_size, "batch": batch, "dtype": dtype, "device": device.type,
        "params": sum(p.numel() for p in model.parameters()), "flops": flops["total"], "flops_aten": flops["aten"],
        "flops_ops": flops["ops"], "total_ms": timing["total_ms"], "outside_ms": outside, "blocks": rows,
        "top_ops": top_ops(model, x, DTYPES[dtype], ops) if ops else [],
    }


def _si(v: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.2f}{unit}"
    return f"{v:.0f}"


def format_profile(p: dict) -> str:
    """The printed report: header, per-block table (rows add up to the total), optional top ops."""
    ops = ", ".join(f"{k} {_si(v)}" for k, v in p["flops_ops"].items()) or "none"
    lines = [
        f"{p['model']}: {p['params']:,} params; {_si(p['flops'])}FLOPs per {p['img_size']}px image "
        f"(aten matmul/conv/attention {_si(p['flops_aten'])} + our ops: {ops})",
        f"forward, batch {p['batch']}, {p['dtype']}, {p['device']}: {p['total_ms']:.2f} ms "
        f"({p['batch'] / p['total_ms'] * 1e3:,.1f} img/s)",
        "",
    ]
    total_ms, total_flops = p["total_ms"], max(p["flops"], 1)
    head = ("block", "type", "params", "FLOPs", "% FLOPs", "ms", "% time")
    body = [(r["name"], r["type"], _si(r["params"]), _si(r["flops"]), f"{100 * r['flops'] / total_flops:.1f}",
             f"{r['ms']:.3f}", f"{100 * r['ms'] / total_ms:.1f}") for r in p["blocks"]]
    outside = p["outside_ms"]
    body.append(("(outside blocks)", "", "", "", "", f"{outside:.3f}", f"{100 * outside / total_ms:.1f}"))
    body.append(("total", "", _si(p["params"]), _si(p["flops"]), "100.0", f"{total_ms:.3f}", "100.0"))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    fmt = lambda row: "  ".join(str(x).ljust(w) if i < 2 else str(x).rjust(w)
                                for i, (x, w) in enumerate(zip(row, widths))).rstrip()
    lines += [fmt(head), "  ".join("-" * w for w in widths), *map(fmt, body)]
    if p["top_ops"]:
        lines += ["", f"top {len(p['top_ops'])} ops by self time (one forward, torch.profiler):"]
        lines += [f"  {o['op']:<48} {o['self_ms']:9.3f} ms  {o['calls']:6d} calls" for o in p["top_ops"]]
    return "\n".join(lines)
