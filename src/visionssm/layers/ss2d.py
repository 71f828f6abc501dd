"""SS2D: VMamba's 2D selective scan mixer with per-route parameters, on NCHW maps.

Liu et al., "VMamba: Visual State Space Model", NeurIPS 2024 (arXiv 2401.10166). Spec:
/work/shared/specs/hierarchical_family.md §1.1-1.3.
official: MzeroMiko/VMamba classification/models/vmamba.py (SS2Dv0, SS2Dv2, mamba_init); parameter names
and shapes are the official ones, so checkpoints load without renaming.

Both published forms are one class:
- v0 ("vanilla"): in_proj C -> 2D with a SiLU(z) gate, 3x3 depthwise conv with bias, N = 16, scan inputs
  forced to float32 (``gate=True, conv_bias=True, d_state=16, force_fp32=True``);
- v2 (``v05_noz``): in_proj C -> D, no gate, conv without bias, N = 1, scan in the input dtype with a
  float32 output ("oflex") that goes through out_norm before the cast back.
Per-token projections are computed once on the map (they commute with the route permutation), as one GEMM
for the K stacked x_proj and a grouped 1x1 conv for the K dt_proj; ``routed_selective_scan`` gathers each
route through its index map, scans, and sums the routes back at map positions.
"""

from __future__ import annotations

import functools
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

from ..ops.dwconv2d import depthwise_conv2d
from ..ops.scan_routes import atrous_routes, cross_routes, multiscale_routes, routed_selective_scan
from ..ops.scan_routes.cross_fused import fused_cross_scan
from ..ops.selective_scan import resolve_backend
from .layer_norm2d import LayerNorm2d
from .linear2d import Linear2d

__all__ = ["RoutedSSM", "SS2D", "route_index", "row_major_index"]

_ROUTES = {"cross": cross_routes, "atrous": atrous_routes, "multiscale": multiscale_routes}
_SS2D_ROUTES = ("cross", "atrous")


def _fp32(t: torch.Tensor) -> torch.Tensor:
    """float32, or wider if t already is (float64 models stay float64)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


@functools.lru_cache(maxsize=128)
def route_index(kind: str, H: int, W: int, device: torch.device) -> torch.Tensor:
    """Cached (K, Lr) index map of a route family for an H x W map (built once per size and device)."""
    if kind not in _ROUTES:
        raise ValueError(f"SS2D: unknown routes {kind!r}; choose one of {sorted(_ROUTES)}")
    with torch.inference_mode(False), torch.no_grad():  # usable later in training even if first built at eval
        return _ROUTES[kind](H, W, device=device)


@functools.lru_cache(maxsize=128)
def row_major_index(H: int, W: int, device: torch.device) -> torch.Tensor:
    """Cached (1, H*W) row-major route (one tensor per size: the routed op caches per index tensor)."""
    return route_index("cross", H, W, device)[:1].clone()


class RoutedSSM(nn.Module):
    """Owns K sets of selective-scan parameters (one per route) under the official names and runs scans.

    x_proj_weight (K, R+2N, D), dt_projs_weight (K, D, R), dt_projs_bias (K, D), A_logs (K*D, N), Ds (K*D).
    """

    def _init_ssm(self, k_group: int, d_inner: int, d_state: int, dt_rank: int, dt_min: float = 0.001,
                  dt_max: float = 0.1, dt_init_floor: float = 1e-4) -> None:
        self.k_group, self.d_inner, self.d_state, self.dt_rank = k_group, d_inner, d_state, dt_rank
        self.x_proj_weight = nn.Parameter(torch.empty(k_group, dt_rank + 2 * d_state, d_inner))
        self.dt_projs_weight = nn.Parameter(torch.empty(k_group, d_inner, dt_rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(k_group, d_inner))
        self.A_logs = nn.Parameter(torch.empty(k_group * d_inner, d_state))
        self.Ds = nn.Parameter(torch.empty(k_group * d_inner))
        self.A_logs._no_weight_decay = True
        self.Ds._no_weight_decay = True
        self._dt_range = (dt_min, dt_max, dt_init_floor)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        """official: mamba_init (x_proj = default nn.Linear init of temporary Linears; dt uniform in
        +-R^-0.5; dt bias = softplus^-1 of dt log-uniform in [dt_min, dt_max]; S4D-real A; D = 1)."""
        nn.init.uniform_(self.x_proj_weight, -self.d_inner**-0.5, self.d_inner**-0.5)
        nn.init.uniform_(self.dt_projs_weight, -self.dt_rank**-0.5, self.dt_rank**-0.5)
        lo, hi, floor = self._dt_range
        dt = torch.exp(torch.rand_like(self.dt_projs_bias) * (math.log(hi) - math.log(lo)) + math.log(lo))
        dt = dt.clamp(min=floor)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        a = torch.arange(1, self.d_state + 1, dtype=self.A_logs.dtype, device=self.A_logs.device)
        self.A_logs.copy_(torch.log(a).expand_as(self.A_logs))
        self.Ds.fill_(1.0)

    def _x_dbl(self, u: torch.Tensor, sets: slice) -> torch.Tensor:
        """(B, L, K, R + 2N): per token and route the dt columns, B and C (one GEMM for the K x_proj).

        Token-major: after LayerNorm2d / 1x1 convs the map is channels-last in memory, so u.mT is contiguous
        and delta comes out channel-contiguous (B, K*D, L) -- the layout the routed kernels gather with one
        coalesced load per visited position. No copy of u is made."""
        xw = self.x_proj_weight[sets]
        batch, dim, length = u.shape
        return F.linear(u.transpose(1, 2), xw.reshape(-1, dim)).view(batch, length, xw.shape[0], -1)

    @staticmethod
    def _dt_proj(dts: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """(B, L, K, R) low-rank dt columns -> delta (B, L, K*D), token-major, by one GEMM with the K dt_proj
        weights (K, D, R) on a block diagonal (K*D, K*R). The per-route einsum ran as a batched GEMM whose
        (K, B*L, D) result then had to be copied into this layout (H100 profile of VMamba-T, batch 128: 1.5 ms
        of bmm plus 2.5 ms of copies per forward); the zero blocks cost K times the einsum's FLOPs, which at
        R = 6..48 is still a few microseconds. ``VISIONSSM_DT_PROJ=einsum`` restores the einsum. Under a torch
        dispatch mode (FlopCounterMode, fake tensors) the einsum runs too, so counted FLOPs stay the model's own
        and not the zero blocks'."""
        batch, length, k, r = dts.shape
        if os.environ.get("VISIONSSM_DT_PROJ") == "einsum" or is_in_torch_dispatch_mode():
            return torch.einsum("blkr,kdr->blkd", dts, weight).reshape(batch, length, -1)
        return F.linear(dts.reshape(batch, length, k * r), torch.block_diag(*weight.to(dts.dtype).unbind(0)))

    def scan(self, u: torch.Tensor, index: torch.Tensor, sets: slice | None = None, by_visit: bool = False,
             force_fp32: bool = False) -> torch.Tensor:
        """u (B, D, Lmap) -> (B, D, Lmap), float32 or wider: the summed route outputs at map positions; with
        ``by_visit`` (one route) (B, D, Lr): the output of every step in route order, no merge.

        ``sets`` picks the parameter sets used (one per route of ``index``).
        """
        sets = sets or slice(0, self.k_group)
        batch, dim, length = u.shape
        k, r, n = self.x_proj_weight[sets].shape[0], self.dt_rank, self.d_state
        if index.shape[0] != k:
            raise ValueError(f"SS2D: index has {index.shape[0]} routes but {k} parameter sets were selected")
        x_dbl = self._x_dbl(u, sets)
        dts, bs, cs = x_dbl.split([r, n, n], dim=-1)
        delta = self._dt_proj(dts, self.dt_projs_weight[sets]).transpose(1, 2)
        bs, cs = bs.permute(0, 2, 3, 1), cs.permute(0, 2, 3, 1)  # (B, K, N, L) views, N-contiguous
        if force_fp32:
            u, delta, bs, cs = (_fp32(t) for t in (u, delta, bs, cs))
        rows = slice(sets.start * dim, sets.stop * dim)
        return routed_selective_scan(
            u, delta, -torch.exp(_fp32(self.A_logs[rows])), bs, cs, index,
            D=_fp32(self.Ds[rows]), delta_bias=_fp32(self.dt_projs_bias[sets].reshape(-1)),
            delta_softplus=True, merge=not by_visit, out_dtype=torch.promote_types(u.dtype, torch.float32),
            backend=self.backend, output_order="route" if by_visit else "map",
        )


class SS2D(RoutedSSM):
    """VMamba SS2D on (B, C, H, W): in_proj -> [dwconv] -> SiLU -> K-route scan -> out_norm [-> * SiLU(z)]
    -> out_proj.

    ``routes="cross"`` is VMamba's 4-way cross-scan; ``routes="atrous"`` is EfficientVMamba's ES2D skip
    scan (4 routes over the 2x2 sub-grids; odd maps are zero-padded before the projections and cropped after
    the merge, as the official EfficientScan does).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 1,
        ssm_ratio: float = 1.0,
        dt_rank: int | str = "auto",
        d_conv: int = 3,
        conv_bias: bool = False,
        gate: bool = False,
        routes: str = "cross",
        force_fp32: bool = False,
        norm_eps: float = 1e-5,
        backend: str | None = None,
    ):
        super().__init__()
        if routes not in _SS2D_ROUTES:
            raise ValueError(f"SS2D: unknown routes {routes!r}; choose one of {_SS2D_ROUTES}")
        d_inner = int(ssm_ratio * d_model)
        dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.d_model, self.gate, self.routes, self.force_fp32 = d_model, gate, routes, force_fp32
        self.backend = backend
        self.in_proj = Linear2d(d_model, d_inner * (2 if gate else 1), bias=False)
        self.act = nn.SiLU()
        self.conv2d = (nn.Conv2d(d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2, groups=d_inner,
                                 bias=conv_bias) if d_conv > 1 else None)
        self._init_ssm(4, d_inner, d_state, dt_rank)
        self.out_norm = LayerNorm2d(d_inner, eps=norm_eps)
        self.out_proj = Linear2d(d_inner, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.in_proj(x)
        dtype = x.dtype  # the compute dtype (bf16 under autocast)
        if self.gate:
            x, z = x.chunk(2, dim=1)
        x = self._conv_act(x)
        H, W = x.shape[-2:]
        if self.routes == "atrous" and (H % 2 or W % 2):
            x = F.pad(x, (0, W % 2, 0, H % 2))
        Hp, Wp = x.shape[-2:]
        if self._use_fused(x):
            y = self.fused_scan(x.flatten(2), Hp, Wp)
        else:
            y = self.scan(x.flatten(2), route_index(self.routes, Hp, Wp, x.device), force_fp32=self.force_fp32)
        y = y.view(y.shape[0], -1, Hp, Wp)[:, :, :H, :W]
        y = self.out_norm(y, out_dtype=dtype)  # float32 scan output normed before the cast (official "oflex")
        if self.gate:
            y = y * self.act(z)
        return self.out_proj(y)

    def _conv_act(self, x: torch.Tensor) -> torch.Tensor:
        """[depthwise conv ->] SiLU. Opt-in (``VISIONSSM_DWCONV=triton``): on the Triton path one kernel with the
        SiLU fused, reading the channels_last map in place (ops/dwconv2d); off until an H100 run shows it faster
        than cuDNN's depthwise conv on channels_last maps."""
        if self.conv2d is None:
            return self.act(x)
        if os.environ.get("VISIONSSM_DWCONV") == "triton" and resolve_backend(self.backend, x.device) == "triton":
            return depthwise_conv2d(x, self.conv2d.weight, self.conv2d.bias, activation="silu", backend="triton")
        return self.act(self.conv2d(x))

    def _use_fused(self, x: torch.Tensor) -> bool:
        """At inference on the Triton path, VMamba v2's cross scan (N <= 4) through fused_cross_scan, which forms
        delta inside the routed kernel instead of writing it (``VISIONSSM_CROSS_FUSED=0`` turns it off). H100,
        batch 128, bf16, forward ms of the scan from x_dbl (benchmarks/bench_cross_fused.py): 1.033 vs 1.735 at
        VMamba-T's stage 1 (rank 6), 0.669 vs 0.815 at stage 2 (rank 12); 0.589 vs 0.511 and 0.610 vs 0.382 at
        ranks 24 and 48, hence the rank limit below."""
        if self.routes != "cross" or self.d_state > 4 or self.force_fp32:
            return False
        if is_in_torch_dispatch_mode():  # FLOP counting / fake tensors: the dt GEMM must run as an aten op
            return False
        # The kernel forms delta with R loads + FMAs per element; at large R (VMamba-T stages 3-4: 24, 48) the
        # einsum on tensor cores plus one delta load may win, so those keep the routed path unless raised.
        if self.dt_rank > int(os.environ.get("VISIONSSM_CROSS_FUSED_MAX_RANK", 16)):
            return False
        if os.environ.get("VISIONSSM_CROSS_FUSED", "1") != "1" or resolve_backend(self.backend, x.device) != "triton":
            return False
        return not (torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self._ssm_params())))

    def _ssm_params(self):
        return (self.x_proj_weight, self.dt_projs_weight, self.dt_projs_bias, self.A_logs, self.Ds)

    def fused_scan(self, u: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """The same as ``scan`` over cross_routes(H, W), with the dt projection inside the Triton kernels."""
        return fused_cross_scan(
            u, self._x_dbl(u, slice(0, 4)), self.dt_projs_weight, -torch.exp(_fp32(self.A_logs)), H, W,
            D=_fp32(self.Ds), delta_bias=_fp32(self.dt_projs_bias.reshape(-1)), delta_softplus=True,
            backend=self.backend,
        )

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, d_inner={self.d_inner}, d_state={self.d_state}, rank={self.dt_rank}, "
                f"routes={self.routes}, gate={self.gate}")
