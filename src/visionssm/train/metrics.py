"""Run outputs besides checkpoints: metrics.csv, TensorBoard events, curves.png, confusion.png, progress.

metrics.csv and the PNGs are rewritten whole and renamed into place. TensorBoard's event file is
an append-only log by design (its reader tolerates a torn last record); on resume we purge the
epochs being redone.
"""

from __future__ import annotations

import csv
import io
import sys
import time
from pathlib import Path

from tqdm import tqdm

from .checkpoint import atomic_write, write_text

COLUMNS = ("epoch", "train_loss", "val_loss", "val_top1", "val_top5", "lr", "img_per_s")


def write_metrics(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in COLUMNS})
    write_text(path, buf.getvalue())


class Events:
    """TensorBoard scalars per epoch; a no-op if the tensorboard package is missing."""

    def __init__(self, out_dir: Path, start_epoch: int):
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print("visionssm: tensorboard is not installed; no events file", file=sys.stderr)
            return
        # purge_step drops events of epochs a resumed run is about to redo
        self.writer = SummaryWriter(log_dir=str(out_dir), purge_step=start_epoch if start_epoch else None)

    def log(self, row: dict) -> None:
        if self.writer is None:
            return
        for key in COLUMNS[1:]:
            self.writer.add_scalar(key.replace("_", "/", 1) if key.startswith(("train", "val")) else key,
                                   row[key], row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _save_png(fig, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))


def plot_curves(path: Path, rows: list[dict]) -> None:
    plt = _pyplot()
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train")
    ax_loss.plot(epochs, [r["val_loss"] for r in rows], "o-", label="val")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    ax_acc.plot(epochs, [r["val_top1"] for r in rows], "o-", label="val top-1")
    ax_acc.plot(epochs, [r["val_top5"] for r in rows], "o-", label="val top-5")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    ax_acc.legend()
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    _save_png(fig, path)
    plt.close(fig)


def plot_confusion(path: Path, confusion, classes: list[str], title: str) -> None:
    plt = _pyplot()
    n = len(classes)
    size = min(4 + 0.35 * n, 20)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(confusion, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046)
    if n <= 40:  # labels and counts stay legible up to here
        ax.set_xticks(range(n), classes, rotation=90)
        ax.set_yticks(range(n), classes)
        peak = max(int(confusion.max()), 1)
        for i in range(n):
            for j in range(n):
                if confusion[i, j]:
                    ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if confusion[i, j] > peak / 2 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    _save_png(fig, path)
    plt.close(fig)


class Progress:
    """tqdm on a TTY; otherwise a plain line every ``every`` steps (logs stay readable)."""

    def __init__(self, total: int, desc: str, every: int, enabled: bool = True, initial: int = 0):
        self.tty = enabled and sys.stderr.isatty()
        self.enabled, self.every, self.total, self.desc = enabled, max(every, 1), total, desc
        self.n, self.t0 = initial, time.perf_counter()
        self.bar = None
        if self.tty:
            self.bar = tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True)

    def update(self, loss: float, acc: float, img_per_s: float) -> None:
        self.n += 1
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {loss:.4f} acc {acc:5.1f}% {img_per_s:,.0f} img/s", refresh=False)
            self.bar.update(1)
        elif self.enabled and (self.n % self.every == 0 or self.n == self.total):
            print(f"{self.desc} step {self.n}/{self.total} loss {loss:.4f} acc {acc:5.1f}% "
                  f"{img_per_s:,.0f} img/s", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
