"""Import mamba_ssm's CUDA selective scan as a speed baseline, building it for this GPU if needed.

Looks for an installed ``mamba_ssm`` first; otherwise for an unpacked mamba-ssm source tree in
``$MAMBA_SRC`` (default ``.vendor/mamba_ssm-*``), compiles ``csrc/selective_scan`` for the current GPU's
architecture only with ``torch.utils.cpp_extension.load`` (cached in ``$MAMBA_BUILD``), and imports
``selective_scan_fn`` and ``mamba_chunk_scan_combined`` without the package ``__init__`` (which pulls in
the whole model zoo). Returns None when nothing is available: benchmarks then run without it.
"""

from __future__ import annotations

import glob
import importlib
import os
import sys
import types
from pathlib import Path

_FLAGS = [
    "-O3", "-std=c++17", "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT162_OPERATORS__", "-U__CUDA_NO_BFLOAT162_CONVERSIONS__", "--expt-relaxed-constexpr",
    "--expt-extended-lambda", "--use_fast_math", "-lineinfo", "--threads", "4",
]  # the flags of mamba-ssm's setup.py


def _source_root() -> Path | None:
    env = os.environ.get("MAMBA_SRC")
    cands = [env] if env else sorted(glob.glob(str(Path(__file__).resolve().parents[1] / ".vendor" / "mamba_ssm-*/")))
    for c in cands:
        if c and (Path(c) / "csrc" / "selective_scan").is_dir():
            return Path(c)
    return None


def load_selective_scan_fn(verbose: bool = True):
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

        return selective_scan_fn
    except Exception:
        pass
    root = _source_root()
    if root is None:
        return None
    import torch
    from torch.utils.cpp_extension import load

    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability()
    arch = f"{major}{minor}"
    build = Path(os.environ.get("MAMBA_BUILD", root / f"build_sm{arch}"))
    build.mkdir(parents=True, exist_ok=True)
    src = root / "csrc" / "selective_scan"
    sources = [str(src / "selective_scan.cpp")] + sorted(str(p) for p in src.glob("*.cu"))
    if (build / "selective_scan_cuda.so").exists():  # built earlier on this kind of GPU: import directly
        sys.path.insert(0, str(build))
        importlib.import_module("selective_scan_cuda")
    else:
        sys.modules["selective_scan_cuda"] = load(
            name="selective_scan_cuda", sources=sources, build_directory=str(build), verbose=verbose,
            extra_cflags=["-O3", "-std=c++17"],
            extra_cuda_cflags=_FLAGS + [f"-gencode=arch=compute_{arch},code=sm_{arch}"],
        )
    # An empty package module stands in for mamba_ssm/__init__.py, so only the submodules we use import.
    pkg = types.ModuleType("mamba_ssm")
    pkg.__path__ = [str(root / "mamba_ssm")]
    sys.modules.setdefault("mamba_ssm", pkg)
    try:
        mod = importlib.import_module("mamba_ssm.ops.selective_scan_interface")
    except Exception as e:  # noqa: BLE001 - report and run without the baseline
        print(f"mamba_ssm baseline unavailable: {type(e).__name__}: {e}", file=sys.stderr)
        return None
    return mod.selective_scan_fn
