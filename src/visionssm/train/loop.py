"""The training loop, nanoGPT style: explicit autocast, explicit DDP, everything in one place.

State is saved every ``save_every_steps`` optimizer steps and at every epoch end. Because batch order
and augmentation are functions of (seed, epoch, index) (see data.py) and the RNG streams, optimizer,
scheduler, EMA and running sums are all in state.pt, a resumed run replays the rest of the epoch
and ends with the same weights as an uninterrupted one, bit for bit on CPU.
"""

from __future__ import annotations

import os
import random
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import timm
import torch
import torch.distributed as tdist
import torch.nn as nn
import yaml
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

import visionssm

from . import distributed
from .checkpoint import clear_run, holds_run, load_state, save_state, save_weights, write_text
from .config import RESUME_OVERRIDABLE, TrainConfig, from_args, load_yaml, to_dict
from .data import EpochBatches, Shard, Transformed, build_data, make_transforms
from .errors import NonFiniteLossError, UserError
from .evaluate import evaluate
from .metrics import Events, Progress, plot_curves, write_metrics
from .model import check_model_name, checkpoint_meta, create_model, data_config_for

PTDTYPE = {"bf16": torch.bfloat16, "fp16": torch.float16}


def config_for_resume(run_dir: str | Path, given: dict) -> TrainConfig:
    """The run's saved config; flags may only change settings that do not alter the computation."""
    run_dir = Path(run_dir)
    base = load_yaml(run_dir / "config.yaml")
    if given.get("output") is not None and Path(given["output"]) != run_dir:
        raise UserError(f"--output {given['output']} differs from --resume {run_dir}; a run resumes in place")
    base.output = str(run_dir)  # the directory may have been moved since
    given = {k: v for k, v in given.items() if k != "output"}
    changed = sorted(k for k, v in given.items() if getattr(base, k, v) != v)
    fixed = [k for k in changed if k not in RESUME_OVERRIDABLE]
    if fixed:
        k = fixed[0]
        flag = f"--{k.replace('_', '-')}"
        raise UserError(f"--resume {run_dir}: {flag} {given[k]} differs from the run's {getattr(base, k)!r}; "
                        f"a resumed run keeps its settings (may change: {sorted(RESUME_OVERRIDABLE)})")
    return from_args(given, base)


def resolve_amp(amp: str, device: torch.device) -> str:
    if amp == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "none"
    return amp


def _prepare_output(cfg: TrainConfig, resume: str | None, overwrite: bool, d) -> Path:
    """Pick and check the run directory before anything is written."""
    if resume:
        out = Path(resume)
        if not (out / "config.yaml").is_file():
            raise UserError(f"--resume {out}: not a run directory (no config.yaml)")
        return out
    out = Path(cfg.output) if cfg.output else Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.model}"
    out = Path(distributed.broadcast_object(str(out), d))  # timestamps could differ between ranks
    if holds_run(out) and not overwrite:
        raise UserError(f"--output {out} already holds a run; pass --resume {out} to continue it "
                        f"or --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise UserError(f"--output {out} is a file, not a directory")
    return out


def _rng_state(device: torch.device) -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def _set_rng_state(s: dict, device: torch.device) -> None:
    torch.set_rng_state(s["torch"])
    if s["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(s["cuda"], device)
    kind, keys, *rest = s["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    random.setstate(s["python"])


def _gather(obj, d):
    """Every rank's obj on every rank (each rank has its own RNG streams and running sums)."""
    if not d.ddp:
        return [obj]
    out = [None] * d.world_size
    tdist.all_gather_object(out, obj)
    return out


def train(cfg: TrainConfig, resume: str | None = None, overwrite: bool = False) -> nn.Module:
    """Train; returns the raw (not EMA, not DDP-wrapped) model. Raises UserError on bad input."""
    d = distributed.setup(cfg.device)
    try:
        return _train(cfg, d, resume, overwrite)
    finally:
        distributed.cleanup(d)


def _train(cfg: TrainConfig, d, resume: str | None, overwrite: bool) -> nn.Module:
    t_start = time.perf_counter()
    log = print if d.is_main else (lambda *a, **k: None)
    cfg.check()
    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other; pick one")
    check_model_name(cfg.model)  # before minutes of data checks
    data = build_data(cfg.data, cfg.val_fraction, cfg.split_seed, cfg.skip_corrupt)
    cfg.resolve_aug(data.digits)
    out = _prepare_output(cfg, resume, overwrite, d)
    state_path = out / "state.pt"
    state = load_state(state_path) if resume and state_path.is_file() else None
    if state is not None and state.get("world_size", 1) != d.world_size:
        raise UserError(f"{state_path} was written by {state['world_size']} process(es); resume with as many "
                        f"(torchrun --nproc_per_node {state['world_size']})")
    device, num_classes = d.device, len(data.classes)

    # model: same seed on every rank, so every rank starts equal (DDP would broadcast rank 0's anyway)
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, num_classes, cfg.img_size, cfg.drop_path, device)
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    data_config = data_config_for(model, cfg.img_size, data.digits)
    train_tf, eval_tf = make_transforms(cfg, data_config, data.digits)

    batches = EpochBatches(len(data.train), cfg.batch_size, cfg.seed, d.rank, d.world_size,
                           cfg.limit_train_batches)
    if batches.num_batches == 0:
        raise UserError(f"train split has {len(data.train)} images, fewer than one global batch of "
                        f"{cfg.batch_size * d.world_size}; lower --batch-size")
    workers = cfg.workers if cfg.workers is not None else (0 if data.digits else min(8, os.cpu_count() or 1))
    loader_kw = dict(num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    # own generator: creating an iterator must not draw from the global RNG (resume would shift it)
    train_loader = DataLoader(Transformed(data.train, train_tf), batch_sampler=batches,
                              generator=torch.Generator(), **loader_kw)
    val_limit = cfg.limit_val_batches * cfg.batch_size if cfg.limit_val_batches else None
    val_loader = DataLoader(Transformed(data.val, eval_tf), batch_size=cfg.batch_size,
                            sampler=Shard(len(data.val), d.rank, d.world_size, val_limit),
                            generator=torch.Generator(), **loader_kw)
    steps_per_epoch = batches.num_batches

    # optimisation: timm's factories (weight decay skips norms, biases and no_weight_decay())
    optimizer = create_optimizer_v2(model, opt=cfg.opt, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler, _ = create_scheduler_v2(
        optimizer, sched=cfg.sched, num_epochs=cfg.epochs, warmup_epochs=cfg.warmup_epochs,
        warmup_lr=cfg.warmup_lr, min_lr=cfg.min_lr, step_on_epochs=False, updates_per_epoch=steps_per_epoch,
    )
    mixup_fn = None
    if cfg.mixup > 0 or cfg.cutmix > 0:
        mixup_fn = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix,
                         label_smoothing=cfg.label_smoothing, num_classes=num_classes)
        train_loss_fn = SoftTargetCrossEntropy()
    elif cfg.label_smoothing > 0:
        train_loss_fn = LabelSmoothingCrossEntropy(smoothing=cfg.label_smoothing)
    else:
        train_loss_fn = nn.CrossEntropyLoss()
    ema = ModelEmaV3(model, decay=cfg.ema_decay, use_warmup=True) if cfg.model_ema else None

    # AMP: autocast around forward + loss; GradScaler only for fp16
    amp = resolve_amp(cfg.amp, device)
    if amp == "fp16" and device.type == "cpu":
        log("visionssm: warning: fp16 autocast on CPU is slow; bf16 or none is better there")
    autocast = nullcontext() if amp == "none" else torch.autocast(device.type, dtype=PTDTYPE[amp])
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")

    epoch, step_in_epoch, global_step, best, history = 0, 0, 0, -1.0, []
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # this rank: loss*n, correct, seen
    if state is not None:
        model.load_state_dict(state["model"])
        if ema is not None and state["ema"] is not None:
            ema.module.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        if state["epochs"] == cfg.epochs:  # else --epochs changed: keep the schedule stretched to it
            scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        epoch, step_in_epoch, global_step = state["epoch"], state["step_in_epoch"], state["step"]
        best, history = state["best_top1"], state["history"]
        mine = state["per_rank"][d.rank]
        sums.copy_(mine["sums"])
        scheduler.step_update(num_updates=global_step)
        log(f"resuming {out} at epoch {epoch + 1}, step {global_step} "
            f"({step_in_epoch}/{steps_per_epoch} of the epoch)")
    else:
        torch.manual_seed(cfg.seed + d.rank)  # per-rank dropout / drop-path streams
        np.random.seed(cfg.seed + d.rank)
        random.seed(cfg.seed + d.rank)

    raw = model
    if d.ddp:
        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    meta = checkpoint_meta(cfg, data.classes, data_config)
    n_params = sum(p.numel() for p in raw.parameters())
    if d.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if overwrite:
            clear_run(out)
        run_info = {"device": str(device), "amp": amp, "world_size": d.world_size,
                    "global_batch": cfg.batch_size * d.world_size, "steps_per_epoch": steps_per_epoch,
                    "params": n_params, "data": data.describe(), "visionssm": visionssm.__version__,
                    "torch": str(torch.__version__), "timm": str(timm.__version__)}
        text = yaml.safe_dump({"config": to_dict(cfg), "run": run_info}, sort_keys=False)
        write_text(out / "config.yaml", text)
    if state is None:
        log(f"{cfg.model}: {n_params / 1e6:.3f}M params | {data.describe()} | {d.world_size} x "
            f"{cfg.batch_size} per step, {steps_per_epoch} steps/epoch | device {device}, amp {amp} | "
            f"output {out}")
    if data.skipped:
        log(f"visionssm: skipped {len(data.skipped)} corrupt image(s), first: {data.skipped[0]}")
    # RNG restored last: everything above may draw from it, the uninterrupted run did not
    if state is not None:
        _set_rng_state(state["per_rank"][d.rank]["rng"], device)
    events = Events(out, start_epoch=epoch + 1 if history else 0) if d.is_main else None

    def save(last_epoch_done: bool, improved: bool = False) -> None:
        per_rank = _gather({"rng": _rng_state(device), "sums": sums.cpu().clone()}, d)
        if not d.is_main:
            return
        if last_epoch_done:
            eval_sd = (ema.module if ema is not None else raw).state_dict()
            row = history[-1]
            info = dict(meta, epoch=row["epoch"], step=global_step, val_top1=row["val_top1"],
                        weights="ema" if ema is not None else "raw")
            save_weights(out / "last.safetensors", eval_sd, info)
            if improved:
                save_weights(out / "best.safetensors", eval_sd, info)
        save_state(state_path, {  # written last: it is what a resume trusts
            "model": raw.state_dict(), "ema": ema.module.state_dict() if ema is not None else None,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "epoch": epoch, "step_in_epoch": step_in_epoch,
            "step": global_step, "best_top1": best, "history": history, "per_rank": per_rank,
            "world_size": d.world_size, "epochs": cfg.epochs, "meta": meta,
        })

    last_saved = state["step"] if state is not None else None
    if epoch >= cfg.epochs:
        log(f"{out}: run already complete ({cfg.epochs} epochs); pass --epochs N to train further")
    while epoch < cfg.epochs:
        batches.set_epoch(epoch, start=step_in_epoch)
        model.train()
        progress = Progress(steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", cfg.log_every,
                            enabled=d.is_main, initial=step_in_epoch)
        t0, seen_now = time.perf_counter(), 0
        for x, y in train_loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            hard = y
            if mixup_fn is not None:
                x, y = mixup_fn(x, y)
            with autocast:
                logits = model(x)
                loss = train_loss_fn(logits, y)
            # every rank must agree to stop, before a bad loss touches the weights
            bad = distributed.all_reduce_sum((~torch.isfinite(loss.detach())).float(), d)
            if bad.item():
                saved = (f"last good checkpoint: {state_path} (step {last_saved})" if last_saved is not None
                         else "no checkpoint had been saved yet")
                where = f"step {global_step + 1} (epoch {epoch + 1}, batch {step_in_epoch + 1})"
                raise NonFiniteLossError(f"loss is {loss.item()} at {where}; stopped, {saved}")
            scaler.scale(loss).backward()
            if cfg.clip_grad:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            global_step += 1
            step_in_epoch += 1
            scheduler.step_update(num_updates=global_step)
            if ema is not None:
                ema.update(raw, step=global_step)

            n = hard.numel()
            correct = (logits.detach().argmax(dim=1) == hard).sum()
            sums += torch.stack([loss.detach().double() * n, correct.double(), sums.new_tensor(n)])
            seen_now += n * d.world_size
            if d.is_main:
                rate = seen_now / max(time.perf_counter() - t0, 1e-9)
                progress.update(loss.item(), 100.0 * correct.item() / n, rate)
            mid_epoch = step_in_epoch < steps_per_epoch  # the epoch end saves anyway
            if cfg.save_every_steps and global_step % cfg.save_every_steps == 0 and mid_epoch:
                save(last_epoch_done=False)
                last_saved = global_step
        progress.close()
        train_time = time.perf_counter() - t0

        total = distributed.all_reduce_sum(sums.clone(), d)
        val = evaluate(ema.module if ema is not None else raw, val_loader, device, autocast, num_classes, d)
        row = {"epoch": epoch + 1, "train_loss": total[0].item() / max(total[2].item(), 1),
               "val_loss": val["loss"], "val_top1": val["top1"], "val_top5": val["top5"],
               "lr": optimizer.param_groups[0]["lr"], "img_per_s": seen_now / max(train_time, 1e-9)}
        history.append(row)
        improved = row["val_top1"] > best
        best = max(best, row["val_top1"])
        epoch, step_in_epoch = epoch + 1, 0
        sums.zero_()
        if d.is_main:
            write_metrics(out / "metrics.csv", history)
            events.log(row)
            plot_curves(out / "curves.png", history)
        save(last_epoch_done=True, improved=improved)
        last_saved = global_step
        log(f"epoch {row['epoch']}/{cfg.epochs} train_loss {row['train_loss']:.4f} "
            f"val_loss {row['val_loss']:.4f} val_top1 {row['val_top1']:.2f}% val_top5 {row['val_top5']:.2f}% "
            f"lr {row['lr']:.2e} "
            f"{row['img_per_s']:,.0f} img/s ({train_time:.1f}s)", flush=True)

    if events is not None:
        events.close()
    if history:
        top = max(history, key=lambda r: r["val_top1"])
        log(f"done in {time.perf_counter() - t_start:.1f}s: best val_top1 {top['val_top1']:.2f}% "
            f"(epoch {top['epoch']}), last {history[-1]['val_top1']:.2f}%; outputs in {out}")
    return raw
