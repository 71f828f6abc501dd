"""Throughput (img/s) and peak memory of one model at one resolution, batch, dtype and mode.

CUDA: CUDA events around every timed iteration (no sync in between, so the host queues ahead as in real
use), median over the timed iterations after warm-up, ``torch.cuda.max_memory_allocated`` over warm-up and
timed iterations (weights, activations and workspaces included). CPU: ``time.perf_counter`` per iteration;
no peak-memory figure. An out-of-memory error is caught and recorded as ``status="oom"``; any other failure
as ``status="error"`` with its first line.

Reduced precision is autocast (weights stay fp32), as in timm's and the papers' benchmarks. Training is one
forward + cross-entropy + backward + AdamW step per iteration.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
from dataclasses import asdict, dataclass

import timm
import torch
import torch.nn.functional as F
from timm.models import model_entrypoint

from .attention import set_attention

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MODES = ("infer", "train")


@dataclass(frozen=True)
class Case:
    model: str
    img_size: int
    batch: int
    dtype: str = "bf16"
    mode: str = "infer"
    attention: str | None = None  # "sdpa" | "naive" | None (as built; models without attention)


@dataclass
class Timing:
    """Per-iteration times in ms (pooled over rounds) and the peak memory (GiB, CUDA only)."""

    times_ms: list[float]
    peak_mem_gib: float | None = None


def auto_batch(img_size: int, device: torch.device) -> int:
    """The issue's defaults on GPUs (128 at 224², 8 at >= 1024²); on CPU 8 at 224², fewer above."""
    if device.type != "cuda":
        return max(1, min(32, round(8 * (224 / img_size) ** 2)))
    for limit, batch in ((224, 128), (384, 64), (512, 32), (768, 16)):
        if img_size <= limit:
            return batch
    return 8


def family(name: str) -> str:
    """Defining module of a timm model name (e.g. "vim", "vision_transformer")."""
    return model_entrypoint(name).__module__.rsplit(".", 1)[-1]


def is_ours(name: str) -> bool:
    return model_entrypoint(name).__module__.startswith("visionssm.")


@contextlib.contextmanager
def timm_fused_attn(enabled: bool | None):
    """timm's global switch for modules built inside the block (restored after)."""
    if enabled is None:
        yield
        return
    from timm.layers import set_fused_attn, use_fused_attn

    before = 2 if use_fused_attn(experimental=True) else (1 if use_fused_attn() else 0)
    set_fused_attn(enabled, experimental=True)
    try:
        yield
    finally:
        set_fused_attn(before > 0, experimental=before > 1)


def build_model(name: str, img_size: int, device: torch.device, attention: str | None = None) -> torch.nn.Module:
    """``timm.create_model(name, img_size=...)``; models without an ``img_size`` argument (convnets, most
    hierarchical models) are built at their default and fed the larger input as it is."""
    with timm_fused_attn(None if attention is None else attention == "sdpa"):
        try:
            model = timm.create_model(name, img_size=img_size)
        except TypeError as e:
            if "img_size" not in str(e):
                raise
            model = timm.create_model(name)
    if attention is not None:
        set_attention(model, attention)
    return model.to(device)


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


def _step_fn(model, x, case: Case, device: torch.device):
    dtype = DTYPES[case.dtype]
    amp = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    if case.mode == "infer":
        model.eval()

        def step():
            with torch.inference_mode(), amp:
                model(x)

        return step
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    target = torch.randint(0, 1000, (x.shape[0],), device=device)

    def step():
        with amp:
            out = model(x)
            out = out[0] if isinstance(out, (tuple, list)) else out
            loss = F.cross_entropy(out.float(), target % out.shape[-1]) if out.dim() == 2 else out.float().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, device: torch.device, warmup: int, iters: int, max_time_s: float) -> list[float]:
    """Warm up (at least 2 calls, more up to ``warmup`` within a quarter of max_time_s), then time up to
    ``iters`` iterations (at least 3, fewer if they would exceed max_time_s)."""
    step()  # first call: allocations, kernel compilation and autotuning, lazy init
    _sync(device)
    t0 = time.perf_counter()
    step()
    _sync(device)
    est = time.perf_counter() - t0
    for _ in range(max(0, min(warmup - 2, int(max_time_s / 4 / max(est, 1e-6))))):
        step()
    n = max(3, min(iters, int(max_time_s / max(est, 1e-6))))
    _sync(device)
    if device.type != "cuda":
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1e3)
        return times
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
    for start, end in events:
        start.record()
        step()
        end.record()
    torch.cuda.synchronize(device)
    return [start.elapsed_time(end) for start, end in events]


class Runner:
    """Builds, measures and frees models case by case. With ``keep_models`` (CPU rounds) built models and
    inputs are kept, so interleaved rounds measure the same objects."""

    def __init__(self, device: torch.device, warmup: int = 5, iters: int = 30, max_time_s: float = 5.0,
                 keep_models: bool = False):
        self.device, self.warmup, self.iters, self.max_time_s = device, warmup, iters, max_time_s
        self.keep_models = keep_models
        self._cache: dict[Case, tuple] = {}

    def _prepare(self, case: Case):
        if case in self._cache:
            return self._cache[case]
        model = build_model(case.model, case.img_size, self.device, case.attention)
        x = torch.randn(case.batch, 3, case.img_size, case.img_size, device=self.device)
        step = _step_fn(model, x, case, self.device)
        prepared = (model, x, step)
        if self.keep_models:
            self._cache[case] = prepared
        return prepared

    def measure(self, case: Case) -> tuple[Timing | None, str | None]:
        """(timing, None) or (None, "oom") or (None, "error: <first line>")."""
        try:
            if self.device.type == "cuda":
                gc.collect()
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(self.device)
            model, x, step = self._prepare(case)
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            times = time_steps(step, self.device, self.warmup, self.iters, self.max_time_s)
            peak = torch.cuda.max_memory_allocated(self.device) / 2**30 if self.device.type == "cuda" else None
            return Timing(times, peak), None
        except Exception as e:  # noqa: BLE001 - recorded per case; the sweep goes on
            status = "oom" if _is_oom(e) else "error: " + (str(e).strip().splitlines() or [type(e).__name__])[0]
            return None, status[:300]
        finally:
            if not self.keep_models:
                model = x = step = None  # noqa: F841 - drop references before freeing the cache
                if self.device.type == "cuda":
                    gc.collect()
                    torch.cuda.empty_cache()

    def close(self):
        self._cache.clear()
        gc.collect()


def param_count(name: str) -> int | None:
    try:
        with torch.device("meta"):
            model = timm.create_model(name)
        return sum(p.numel() for p in model.parameters())
    except Exception:  # noqa: BLE001 - an init without a meta kernel: count on CPU
        return sum(p.numel() for p in timm.create_model(name).parameters())


def record(case: Case, timing: Timing | None, status: str | None, params: int | None, device: torch.device,
           scan_backend: str | None) -> dict:
    """One JSON record: the case, its medians in ms and img/s, peak memory, status."""
    rec = asdict(case)
    rec.update(family=family(case.model), params=params, device=device.type, scan_backend=scan_backend,
               status="ok" if status is None else (status if status in ("oom", "skipped") else "error"),
               error=None if status in (None, "oom", "skipped") else status.removeprefix("error: "))
    if timing is None:
        rec.update(median_ms=None, min_ms=None, iters=0, iqr_pct=None, img_per_s=None, peak_mem_gib=None)
        return rec
    t = timing.times_ms
    med = statistics.median(t)
    q = statistics.quantiles(t, n=4) if len(t) >= 2 else [med, med, med]
    rec.update(median_ms=med, min_ms=min(t), iters=len(t), iqr_pct=100 * (q[2] - q[0]) / med,
               img_per_s=case.batch / (med * 1e-3), peak_mem_gib=timing.peak_mem_gib)
    return rec
