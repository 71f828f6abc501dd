"""Opt-in time-parallel, state-by-state Triton selective scan (triton_tiled.py) vs the float64 reference.

On CPU under TRITON_INTERPRET=1 on small shapes, with small tiles so that short sequences span several
segments (forward end states, backward adjoints and the last state's grad all cross segment boundaries).
"""

from __future__ import annotations

import pytest
import torch

from .test_selective_scan_triton import LOW, _check, spy_on_scan


@pytest.fixture
def tiled_calls(monkeypatch):
    """Opts in and counts the tiled kernel's launches (the dispatch must pick it)."""
    monkeypatch.setenv("VISIONSSM_SCAN_TILED", "1")
    return spy_on_scan(monkeypatch, "TiledScan")


@pytest.mark.parametrize("cfg", ["2,1,2,2", "4,2,4,4"])  # 32- and 64-token segments
@pytest.mark.parametrize(
    "shape,groups,reverse,last",
    [((2, 4, 1, 16), 1, False, True), ((2, 4, 37, 16), 1, True, True), ((1, 8, 70, 16), 2, False, True),
     ((1, 4, 19, 64), 1, True, False)],
)
def test_tiled_fp32_matches_reference(cfg, shape, groups, reverse, last, tiled_calls, triton_device, monkeypatch):
    monkeypatch.setenv("VISIONSSM_SCAN_TILED_CFG", cfg)
    _check(shape, groups, reverse, last, triton_device)
    assert tiled_calls == [shape[3]]


def test_tiled_without_gate_and_skip(tiled_calls, triton_device, monkeypatch):
    monkeypatch.setenv("VISIONSSM_SCAN_TILED_CFG", "2,1,2,2")
    _check((2, 4, 45, 8), 1, False, False, triton_device, use_z=False)
    assert tiled_calls == [8]


@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_tiled_low_precision_inputs(name, tiled_calls, triton_device, monkeypatch):
    monkeypatch.setenv("VISIONSSM_SCAN_TILED_CFG", "2,1,2,2")
    _check((2, 4, 45, 16), 1, True, True, triton_device, dtype=LOW[name], tol=1e-2)
    assert tiled_calls == [16]


def test_tiled_odd_channels_per_group_keep_the_default_kernel(tiled_calls, triton_device):
    _check((1, 6, 20, 16), 2, False, False, triton_device)  # 3 channels per group
    assert tiled_calls == []


@pytest.mark.gpu
@pytest.mark.parametrize("nstate,reverse", [(16, False), (16, True), (64, False)])
def test_tiled_gpu_real_sizes_fp32(nstate, reverse, tiled_calls):
    _check((4, 128, 1000, nstate), 1, reverse, True, torch.device("cuda"))


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_tiled_gpu_real_sizes_low_precision(name, tiled_calls):
    _check((8, 384, 197, 16), 2, False, True, torch.device("cuda"), dtype=LOW[name], tol=1e-2)


@pytest.mark.gpu
def test_tiled_gpu_long_sequence(tiled_calls):
    _check((1, 64, 6085, 16), 1, True, True, torch.device("cuda"), dtype=torch.bfloat16, tol=1e-2, ref_backend="torch")
