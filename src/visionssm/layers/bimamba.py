"""Bidirectional Mamba mixer of Vision Mamba ("bimamba v2").

Spec: /work/shared/specs/plain_family.md §1.3 and §1.6.
official: hustvl/Vim : mamba-1p1p1/mamba_ssm/modules/mamba_simple.py (Mamba, bimamba_type="v2")

Two S6 branches share in_proj, the gate z and out_proj; each has its own conv1d / x_proj / dt_proj /
A / D. The forward branch is causal in the token order; the backward branch is the official
"flip everything, run the same recipe, flip back", computed here without flipped copies: an
anti-causal conv (``reverse=True``) and a right-to-left scan on the same tensors; both scans run as one
``bidirectional_selective_scan`` (one Triton launch). out = out_proj((y_f + y_b) / 2), both y gated by
silu(z).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops.conv1d import causal_conv1d
from ..ops.selective_scan import bidirectional_selective_scan

__all__ = ["BiMamba"]


def _fp32(t: torch.Tensor) -> torch.Tensor:
    """At least float32 (official: A, D and delta_bias go to the scan in fp32; float64 stays float64)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


class BiMamba(nn.Module):
    """Bimamba-v2 mixer. Input and output ``(batch, L, d_model)``.

    Attribute names equal the official state-dict keys (``in_proj``, ``conv1d``, ``conv1d_b``,
    ``x_proj``, ``x_proj_b``, ``dt_proj``, ``dt_proj_b``, ``A_log``, ``A_b_log``, ``D``, ``D_b``,
    ``out_proj``). ``backend`` is handed to :func:`visionssm.ops.selective_scan.bidirectional_selective_scan`.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
        dt_scale: float = 1.0,
        conv_bias: bool = True,
        bias: bool = False,
        divide_out: bool = True,
        backend: str | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.divide_out = divide_out
        self.backend = backend
        e, r, n = self.d_inner, self.dt_rank, d_state

        self.in_proj = nn.Linear(d_model, 2 * e, bias=bias, **dd)
        # official: padding=d_conv-1 kept on the modules for checkpoint/repr parity; forward calls the op.
        conv = dict(kernel_size=d_conv, groups=e, padding=d_conv - 1, bias=conv_bias, **dd)
        self.conv1d = nn.Conv1d(e, e, **conv)
        self.x_proj = nn.Linear(e, r + 2 * n, bias=False, **dd)
        self.dt_proj = nn.Linear(r, e, bias=True, **dd)
        self.A_log = nn.Parameter(torch.empty(e, n, device=device, dtype=torch.float32))
        self.D = nn.Parameter(torch.empty(e, device=device, dtype=torch.float32))
        # Backward branch: PyTorch default init except A_b_log / D_b.
        self.conv1d_b = nn.Conv1d(e, e, **conv)
        self.x_proj_b = nn.Linear(e, r + 2 * n, bias=False, **dd)
        self.dt_proj_b = nn.Linear(r, e, bias=True, **dd)
        self.A_b_log = nn.Parameter(torch.empty(e, n, device=device, dtype=torch.float32))
        self.D_b = nn.Parameter(torch.empty(e, device=device, dtype=torch.float32))
        self.out_proj = nn.Linear(e, d_model, bias=bias, **dd)
        for p in (self.A_log, self.D, self.A_b_log, self.D_b):
            p._no_weight_decay = True
        self._init_ssm(dt_min, dt_max, dt_init_floor, dt_scale)

    @torch.no_grad()
    def _init_ssm(self, dt_min: float, dt_max: float, dt_init_floor: float, dt_scale: float) -> None:
        """Mamba's dt / S4D-real init.

        official: hustvl/Vim : mamba-1p1p1/mamba_ssm/modules/mamba_simple.py
        """
        std = self.dt_rank**-0.5 * dt_scale
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        # softplus(bias) log-uniform in [dt_min, dt_max]; bias = softplus^-1(dt) = dt + log(1 - exp(-dt)).
        log_lo, log_hi = math.log(dt_min), math.log(dt_max)
        dt = torch.exp(torch.rand(self.d_inner, device=self.dt_proj.bias.device) * (log_hi - log_lo) + log_lo)
        dt = dt.clamp(min=dt_init_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True  # survives the model-level "zero every Linear bias"
        # official quirk: dt_proj_b.bias is NOT marked _no_reinit, so VisionMamba's init zeroes it and the
        # backward branch starts at delta = softplus(0) ~ 0.693 (plain_family.md §1.6). Kept for parity.
        a = torch.arange(1, self.d_state + 1, dtype=torch.float32, device=self.A_log.device)
        self.A_log.copy_(torch.log(a).expand(self.d_inner, -1))
        self.A_b_log.copy_(self.A_log)
        self.D.fill_(1.0)
        self.D_b.fill_(1.0)

    def _branch(self, x, conv, x_proj, dt_proj, reverse: bool):
        """One direction's scan inputs: conv (anti-causal if reverse) -> SiLU -> x_proj -> dt_proj."""
        xc = causal_conv1d(x, conv.weight.squeeze(1), conv.bias, activation="silu", reverse=reverse)
        x_dbl = F.linear(xc.transpose(1, 2), x_proj.weight)  # (batch, L, R + 2N)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.linear(dt, dt_proj.weight).transpose(1, 2)  # bias goes in as delta_bias
        return xc, delta, B.transpose(1, 2), C.transpose(1, 2)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        xz = self.in_proj(hidden_states).transpose(1, 2)  # (batch, 2E, L)
        x, z = xz.chunk(2, dim=1)
        f = self._branch(x, self.conv1d, self.x_proj, self.dt_proj, False)
        b = self._branch(x, self.conv1d_b, self.x_proj_b, self.dt_proj_b, True)
        # Both directions, each gated by silu(z), in one scan launch on the Triton path.
        ys = bidirectional_selective_scan(
            (f[0], b[0]), (f[1], b[1]), (-torch.exp(_fp32(self.A_log)), -torch.exp(_fp32(self.A_b_log))),
            (f[2], b[2]), (f[3], b[3]), D=(_fp32(self.D), _fp32(self.D_b)), z=z,
            delta_bias=(_fp32(self.dt_proj.bias), _fp32(self.dt_proj_b.bias)), delta_softplus=True,
            backend=self.backend,
        )
        # (batch, E, L): y_f + y_b, halved in the same pass (official: if_divide_out=True for every released model)
        y = ys.mean(1) if self.divide_out else ys.sum(1)
        return self.out_proj(y.transpose(1, 2))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_inner={self.d_inner}, d_state={self.d_state}, rank={self.dt_rank}"
