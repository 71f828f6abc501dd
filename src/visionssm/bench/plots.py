"""PNG plots of a sweep: throughput and peak memory vs resolution, log-log, one line per configuration."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402

_METRICS = {"throughput": ("img_per_s", "images / s"), "memory": ("peak_mem_gib", "peak memory (GiB)")}


def _series(records: list[dict], key: str) -> dict[str, list[tuple[int, float, int]]]:
    """label -> [(img_size, value, batch)] of successful records, sorted by resolution."""
    out: dict[str, list] = defaultdict(list)
    for r in records:
        if r["status"] != "ok" or r.get(key) is None:
            continue
        label = r["model"] + (f" ({r['attention']})" if r["attention"] else "")
        label += f", {r['dtype']}" + (", train" if r["mode"] == "train" else "")
        out[label].append((r["img_size"], r[key], r["batch"]))
    return {k: sorted(v) for k, v in sorted(out.items())}


def _failures(records: list[dict]) -> list[str]:
    return sorted({f"{r['model']} ({r['attention'] or '-'}) {r['img_size']}px: {r['status']}"
                   for r in records if r["status"] != "ok"})


def plot_metric(records: list[dict], metric: str, path: str | Path, title: str = "") -> Path | None:
    """One PNG for ``metric`` ("throughput" or "memory"); None when nothing has that metric (CPU memory)."""
    key, ylabel = _METRICS[metric]
    series = _series(records, key)
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    for label, pts in series.items():
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        style = "--" if "(naive)" in label else "-"
        ax.plot(xs, ys, style, marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    res = sorted({p[0] for pts in series.values() for p in pts})
    ax.set_xticks(res, [str(r) for r in res])
    ax.minorticks_off()
    ax.set_xlabel("resolution (px per side)")
    ax.set_ylabel(ylabel)
    batches = sorted({p[2] for pts in series.values() for p in pts})
    ax.set_title((title + "\n" if title else "") + f"{metric}; batch {', '.join(map(str, batches))}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fails = _failures(records)
    if fails:
        fig.text(0.01, 0.01, "not measured: " + "; ".join(fails)[:300], fontsize=6, wrap=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_all(records: list[dict], stem: str | Path, title: str = "") -> list[Path]:
    """``<stem>_throughput.png`` and ``<stem>_memory.png`` (the latter only with memory figures)."""
    out = []
    for metric in _METRICS:
        p = plot_metric(records, metric, f"{stem}_{metric}.png", title)
        if p is not None:
            out.append(p)
    return out
