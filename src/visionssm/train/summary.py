"""`visionssm models`: the visionssm-registered timm models with params and FLOPs.

FLOPs are torch.utils.flop_counter.FlopCounterMode's count (2 per multiply-add of matmuls and
convolutions) of one image at the default resolution, plus our ops' own analytic counts
(``visionssm.ops._flops``: a selective scan adds 9·B·L·D·N, plus B·D·L for the D skip and B·D·L for the
z gate, the mamba_ssm / VMamba reference count; routed scans and SSD ops likewise), with the aten ops that
run inside our ops left out -- the same accounting as ``visionssm profile``. Other elementwise work
(norms, activations) is not counted.
"""

from __future__ import annotations

import contextlib
import sys

import timm
import torch
from timm.models import get_pretrained_cfg, model_entrypoint
from torch.utils.flop_counter import FlopCounterMode

import visionssm  # noqa: F401  (registers visionssm models in timm)
from visionssm.ops import _flops


def visionssm_model_names(pattern: str = "") -> list[str]:
    names = timm.list_models(f"*{pattern}*" if pattern else "")
    return [n for n in names if model_entrypoint(n).__module__.startswith("visionssm.")]


def family_and_paper(name: str) -> tuple[str, str]:
    """Family = defining module. Paper = pretrained cfg's paper_name (else the module's PAPER, else its
    docstring title up to ':') and paper_ids."""
    module_name = model_entrypoint(name).__module__
    module = sys.modules.get(module_name)
    cfg = get_pretrained_cfg(name, allow_unregistered=True)
    title = (cfg.paper_name if cfg is not None else None) or getattr(module, "PAPER", None)
    if not title and module is not None and module.__doc__:
        title = module.__doc__.strip().splitlines()[0].split(":")[0].rstrip(".")
    ids = cfg.paper_ids if cfg is not None else None
    ids = ids if isinstance(ids, str) or ids is None else ", ".join(ids)
    paper = " ".join(x for x in (title, f"({ids})" if ids else "") if x)
    return module_name.rsplit(".", 1)[-1], paper


@contextlib.contextmanager
def _shape_only_scans():
    """Swap the plain scan backends for a shape-only stand-in (speed: the count comes from the op's
    ``_flops.add``, which the public function calls before it dispatches)."""
    from visionssm.ops import selective_scan as ss

    def stand_in(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, reverse=False,
                 return_last_state=False):
        batch, dim, _ = u.shape
        n = A.shape[-1]
        y = torch.zeros_like(u)
        return (y, u.new_zeros(batch, dim, n, dtype=torch.float32)) if return_last_state else y

    names = ("selective_scan_chunked", "selective_scan_reference")
    saved = {k: getattr(ss, k) for k in names if hasattr(ss, k)}
    try:
        for k in saved:
            setattr(ss, k, stand_in)
        yield
    finally:
        for k, v in saved.items():
            setattr(ss, k, v)


def count_flops(model: torch.nn.Module, input_size: tuple[int, int, int]) -> int:
    """FLOPs of one image (see module docstring); runs on the model's device (meta works)."""
    param = next(model.parameters())
    x = torch.zeros(1, *input_size, device=param.device, dtype=param.dtype)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), _shape_only_scans(), _flops.count_op_flops() as ops, _flops.hidden_inside_ops(counter):
        with counter:
            model.eval()(x)
    return counter.get_total_flops() + sum(ops.values())


def describe(name: str) -> dict:
    family, paper = family_and_paper(name)
    try:  # meta device: no memory, no init cost
        with torch.device("meta"):
            model = timm.create_model(name)
        flops = count_flops(model, model.pretrained_cfg["input_size"])
    except Exception:  # some init or op has no meta kernel: build it for real
        model = timm.create_model(name)
        flops = count_flops(model, model.pretrained_cfg["input_size"])
    params = sum(p.numel() for p in model.parameters())
    res = "x".join(str(v) for v in model.pretrained_cfg["input_size"][1:])
    return {"name": name, "params": params, "flops": flops, "resolution": res, "family": family,
            "paper": paper}


def _si(v: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if v >= scale:
            return f"{v / scale:.2f}{unit}"
    return f"{v:.0f}"


def table(rows: list[dict]) -> str:
    head = ("name", "params", "FLOPs", "res", "family", "seed paper")
    body = [(r["name"], _si(r["params"]), _si(r["flops"]), r["resolution"], r["family"], r["paper"])
            for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in (head, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
