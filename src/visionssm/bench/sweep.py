"""A benchmark sweep: models x resolutions x batch sizes x dtypes x modes x attention implementations.

Cases run one after the other; with ``rounds > 1`` the whole list is repeated round-robin and the
per-iteration times are pooled, so slow drift of a shared machine (other jobs on the CPU) hits every model
alike instead of whichever happened to run during it.
"""

from __future__ import annotations

import datetime
import platform
from collections.abc import Iterable, Sequence

import timm
import torch

from .attention import has_attention
from .throughput import Case, Runner, auto_batch, is_ours, param_count, record

GPU_MODELS = ("vim_tiny_patch16_224", "vim_small_patch16_224", "deit_tiny_patch16_224", "deit_small_patch16_224")
CPU_MODELS = ("vim_tiny_patch16_224", "deit_tiny_patch16_224")
GPU_RESOLUTIONS = (224, 512, 768, 1024, 1248, 2048)
CPU_RESOLUTIONS = (224,)
# (ours, baseline) pairs compared whenever both were measured.
PAIRS = (
    ("vim_tiny_patch16_224", "deit_tiny_patch16_224"),
    ("vim_small_patch16_224", "deit_small_patch16_224"),
    ("vim_base_patch16_224", "deit_base_patch16_224"),
    ("vmamba_tiny_s1l8", "swin_tiny_patch4_window7_224"),
    ("vanilla_vmamba_tiny", "swin_tiny_patch4_window7_224"),
    ("vmamba_small_s2l15", "swin_small_patch4_window7_224"),
    ("vmamba_base_s2l15", "swin_base_patch4_window7_224"),
)


def model_has_attention(name: str) -> bool:
    try:
        with torch.device("meta"):
            return has_attention(timm.create_model(name))
    except Exception:  # noqa: BLE001 - an init without a meta kernel: build it on CPU
        return has_attention(timm.create_model(name))


def plan(models: Sequence[str], resolutions: Sequence[int], batches: Sequence[int | str], dtypes: Sequence[str],
         modes: Sequence[str], attention: str, device: torch.device) -> list[Case]:
    """All cases; ``attention`` is "both", "sdpa", "naive" or "default" (as timm builds it). Models without
    timm attention modules get one case per config. Batch "auto" follows :func:`auto_batch`."""
    impls: dict[str, list[str | None]] = {}
    for name in models:
        impls[name] = [None]
        if attention != "default" and model_has_attention(name):
            impls[name] = ["sdpa", "naive"] if attention == "both" else [attention]
    cases = []
    # Resolution outside models: a sweep cut short by its time budget loses whole resolutions (the last
    # given), not whole models.
    for mode in modes:
        for res in resolutions:
            for name in models:
                for b in batches:
                    batch = auto_batch(res, device) if b == "auto" else int(b)
                    for dtype in dtypes:
                        cases.extend(Case(name, res, batch, dtype, mode, impl) for impl in impls[name])
    return list(dict.fromkeys(cases))  # "auto" and an explicit batch may coincide


def _progress(cases, enabled: bool):
    if not enabled:
        return cases
    from tqdm.auto import tqdm

    return tqdm(cases, desc="bench", unit="case", dynamic_ncols=True, leave=False, disable=None)


def run(cases: Sequence[Case], device: torch.device, *, rounds: int = 1, warmup: int = 5, iters: int = 30,
        max_time_s: float = 5.0, progress: bool = True, budget_s: float | None = None) -> list[dict]:
    """Measure every case; returns one record per case (see :func:`throughput.record`). Cases not started
    within ``budget_s`` seconds, or not measured when a KeyboardInterrupt arrived, are recorded as
    ``status="skipped"``."""
    import time

    from visionssm.ops.selective_scan import resolve_backend

    t_start = time.monotonic()

    runner = Runner(device, warmup=warmup, iters=iters, max_time_s=max_time_s, keep_models=rounds > 1)
    times: dict[Case, list[float]] = {c: [] for c in cases}
    peaks: dict[Case, float | None] = {c: None for c in cases}
    status: dict[Case, str | None] = {c: None for c in cases}
    work = [c for _ in range(rounds) for c in cases]
    bar = _progress(work, progress)
    for case in bar:
        if status[case] is not None:  # failed in an earlier round
            continue
        if budget_s is not None and time.monotonic() - t_start > budget_s and not times[case]:
            status[case] = "skipped"
            continue
        if hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(f"{case.model} {case.img_size}px b{case.batch} {case.attention or ''}".strip())
        try:
            timing, st = runner.measure(case)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (see cli): keep what was measured, skip the rest
            for c in cases:
                if status[c] is None and not times[c]:
                    status[c] = "skipped"
            break
        if st is not None:
            status[case] = st
            continue
        times[case].extend(timing.times_ms)
        if timing.peak_mem_gib is not None:
            peaks[case] = max(peaks[case] or 0.0, timing.peak_mem_gib)
    runner.close()
    from .throughput import Timing

    params = {name: param_count(name) for name in dict.fromkeys(c.model for c in cases)}
    backend = resolve_backend(None, device)
    return [
        record(c, Timing(times[c], peaks[c]) if status[c] is None else None, status[c], params[c.model], device,
               backend if is_ours(c.model) else None)
        for c in cases
    ]


def comparisons(records: Iterable[dict], pairs: Sequence[tuple[str, str]] = PAIRS) -> list[dict]:
    """ours vs base at equal (img_size, batch, dtype, mode), for every measured attention impl of the base:
    speedup = ours img/s / base img/s; mem_ratio = ours peak / base peak."""
    records = list(records)
    out = []
    for ours, base in pairs:
        for r in records:
            if r["model"] != ours:
                continue
            key = (r["img_size"], r["batch"], r["dtype"], r["mode"])
            for b in records:
                if b["model"] != base or (b["img_size"], b["batch"], b["dtype"], b["mode"]) != key:
                    continue
                both = r["status"] == "ok" and b["status"] == "ok"
                mem = both and r["peak_mem_gib"] is not None and b["peak_mem_gib"] is not None
                out.append({
                    "ours": ours, "base": base, "base_attention": b["attention"], "img_size": key[0],
                    "batch": key[1], "dtype": key[2], "mode": key[3],
                    "ours_img_per_s": r["img_per_s"], "base_img_per_s": b["img_per_s"],
                    "ours_peak_mem_gib": r["peak_mem_gib"], "base_peak_mem_gib": b["peak_mem_gib"],
                    "ours_status": r["status"], "base_status": b["status"],
                    "speedup": r["img_per_s"] / b["img_per_s"] if both else None,
                    "mem_ratio": r["peak_mem_gib"] / b["peak_mem_gib"] if mem else None,
                })
    return out


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{_cpu_model()}, {torch.get_num_threads()} threads"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def device_tag(device: torch.device) -> str:
    """Short file-name tag: "h100", "a100", ..., or "cpu"."""
    if device.type != "cuda":
        return "cpu"
    words = torch.cuda.get_device_name(device).lower().replace("nvidia", "").replace("geforce", "").split()
    return (words[0] if words else "cuda").replace("/", "-")


def result(records: list[dict], device: torch.device, settings: dict, pairs=PAIRS) -> dict:
    """The JSON document of a run (schema of /work/shared/DESIGN.md plus settings and comparisons)."""
    try:
        import triton

        triton_version = triton.__version__
    except Exception:  # noqa: BLE001 - CPU-only installs
        triton_version = None
    import visionssm

    return {
        "device": device_name(device),
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "triton": triton_version,
        "timm": timm.__version__,
        "visionssm": visionssm.__version__,
        "settings": settings,
        "records": records,
        "comparisons": comparisons(records, pairs),
    }
