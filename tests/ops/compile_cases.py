"""Run a script that compiles Triton kernels for sm_90 ahead of time, outside the interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_compile_script(script: str, timeout: int = 600) -> None:
    """A subprocess, because tests/conftest.py puts Triton in interpreter mode for this process; the script
    prints "compiled" at its end. Skips where the Triton install has no ptxas."""
    pytest.importorskip("triton.backends.nvidia")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2] / "src"), env.get("PYTHONPATH", "")])
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=timeout)
    if run.returncode != 0 and "ptxas" in run.stderr and "not found" in run.stderr.lower():
        pytest.skip("no ptxas in this Triton install")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "compiled" in run.stdout
