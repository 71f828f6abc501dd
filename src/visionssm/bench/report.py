"""Text tables of a run and its JSON file (written atomically next to its plots)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def _fmt(v, spec: str, none: str = "-") -> str:
    return none if v is None else format(v, spec)


def _table(head: tuple[str, ...], rows: list[tuple]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(str(x).rjust(w) if i >= 2 else str(x).ljust(w) for i, (x, w) in enumerate(zip(line, widths)))
             .rstrip() for line in (head, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def records_table(records: list[dict]) -> str:
    head = ("model", "attn", "res", "batch", "dtype", "mode", "img/s", "ms/iter", "peak GiB", "iqr %", "status")
    rows = [(r["model"], r["attention"] or "-", r["img_size"], r["batch"], r["dtype"], r["mode"],
             _fmt(r["img_per_s"], ",.1f"), _fmt(r["median_ms"], ".2f"), _fmt(r["peak_mem_gib"], ".2f"),
             _fmt(r.get("iqr_pct"), ".1f"), r["status"] if r["status"] != "error" else f"error: {r['error']}"[:60])
            for r in records]
    return _table(head, rows)


def comparisons_table(comps: list[dict]) -> str:
    head = ("ours", "vs base", "res", "batch", "dtype", "mode", "ours img/s", "base img/s", "speedup", "mem ratio")
    rows = [(c["ours"], f"{c['base']} ({c['base_attention'] or '-'})", c["img_size"], c["batch"], c["dtype"],
             c["mode"], _fmt(c["ours_img_per_s"], ",.1f", c["ours_status"]),
             _fmt(c["base_img_per_s"], ",.1f", c["base_status"]),
             f"{c['speedup']:.2f}x" if c["speedup"] is not None else "-",
             _fmt(c["mem_ratio"], ".2f")) for c in comps]
    return _table(head, rows)


def write_json(doc: dict, path: str | os.PathLike) -> Path:
    """Write via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
