"""Checkpoints: atomic writes, safe loads, one-line errors.

- Every file goes to a temporary sibling, is fsync'ed, then renamed over the target: a crash leaves
  either the old file or the new one, never half of one.
- Weights are safetensors with a JSON "visionssm" metadata entry (model name, classes, transforms)
  so eval/predict need nothing else. state.pt (optimizer, scheduler, EMA, RNG, counters, and the raw
  weights, so one rename makes the whole state consistent) only holds tensors and plain Python
  values, and is read with ``torch.load(weights_only=True)``: a pickle carrying code is refused and
  the code never runs.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .errors import UserError

RUN_FILES = ("config.yaml", "state.pt", "last.safetensors", "best.safetensors", "metrics.csv", "curves.png")
META_KEY = "visionssm"
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read it back: files we create honour the user's umask


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` then rename tmp -> path (same directory, so the rename is atomic)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # some writers (safetensors) create 0600 files
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def save_weights(path: Path, state_dict: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    # clone: safetensors refuses tensors that share storage (tied weights)
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state_dict.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)}))


def save_state(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _unsafe_pickle(path: Path, e: Exception) -> UserError:
    lines = [ln.strip() for ln in str(e).splitlines()]
    why = next((ln for ln in lines if "Unsupported" in ln or "global" in ln.lower()), "")
    why = f" ({why})" if why else ""
    return UserError(f"refused {path}: the pickle carries code or non-tensor objects{why}; nothing ran")


def torch_load(path: Path) -> Any:
    """torch.load(weights_only=True) with every failure turned into one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower() or "weights_only" in str(e).lower():
            raise _unsafe_pickle(path, e) from None
        raise UserError(f"checkpoint {path} is truncated or corrupt (UnpicklingError: {_first(e)})") from None
    except (EOFError, RuntimeError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise UserError(f"checkpoint {path} is truncated or corrupt ({type(e).__name__}: {_first(e)})") \
            from None


def _first(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]


def load_state(path: Path) -> dict[str, Any]:
    state = torch_load(path)
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        raise UserError(f"{path} is not a visionssm training state (no 'model'/'step' entries)")
    return state


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """State dict and visionssm metadata ({} if none) from .safetensors, or .pt/.pth/.bin (weights only)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found")
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError) as e:
            raise UserError(f"checkpoint {path} is truncated or corrupt ({_first(e)})") from None
        try:
            info = json.loads(meta[META_KEY]) if META_KEY in meta else {}
        except json.JSONDecodeError:
            raise UserError(f"checkpoint {path}: unreadable '{META_KEY}' metadata") from None
        return tensors, info
    obj = torch_load(path)
    info = {}
    if isinstance(obj, dict) and isinstance(obj.get("meta"), dict):
        info = obj["meta"]  # our state.pt
    for key in ("model", "state_dict", "model_state_dict"):  # common wrappers (ours, timm, lightning)
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"checkpoint {path} holds no state dict of tensors")
    if obj and all(k.startswith("module.") for k in obj):  # saved from a DDP wrapper
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj, info


def _listed(kind: str, keys: list[str], limit: int = 4) -> str:
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return f"{kind} {len(keys)}: {', '.join(keys[:limit])}{more}"


def load_into(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], path: Path, model_name: str):
    """Strict load with a one-line account of missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)}!={tuple(own[k].shape)}"
        for k in own
        if k in state_dict and state_dict[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = [_listed(kind, keys) for kind, keys in
                 (("missing", missing), ("unexpected", unexpected), ("shape", shapes)) if keys]
        raise UserError(f"checkpoint {path} does not fit {model_name}: mismatched keys: {'; '.join(parts)}")
    model.load_state_dict(state_dict, strict=True)


def holds_run(directory: Path) -> bool:
    return any((Path(directory) / name).exists() for name in RUN_FILES)


def clear_run(directory: Path) -> None:
    """--overwrite: remove the old run's files (only ours), so none can be mistaken for the new run's."""
    directory = Path(directory)
    for name in RUN_FILES + ("confusion.png",):
        (directory / name).unlink(missing_ok=True)
    for events in directory.glob("events.out.tfevents.*"):
        events.unlink()
