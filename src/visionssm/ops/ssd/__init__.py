"""State-space duality (SSD) ops: public API, shape checks, FLOP accounting and backend dispatch.

Three ops:
- :func:`ssd_causal`     Mamba-2's SSD (scalar decay per head), layout of ``mamba_chunk_scan_combined``.
- :func:`ssd_noncausal`  VSSD's non-causal SSD: one global state per head from all tokens, no decay.
- :func:`hsm_ssd`        EfficientViM's hidden-state mixer SSD (softmax over tokens, mixing in the N columns).

Layouts: x ``(batch, L, heads, headdim)``, dt ``(batch, L, heads)``, A ``(heads,)``, B, C ``(batch, L, groups, N)``
(head h reads group h // (heads/groups)); HSM-SSD keeps EfficientViM's channels-first ``(batch, dim, L)``.
Backends: ``"reference"`` (closed forms, float64-capable), ``"torch"`` (chunked / matmul, float32 or wider),
``"triton"`` (GPU). ``backend=None`` picks ``"triton"`` for CUDA tensors when Triton imports, else ``"torch"``;
``VISIONSSM_BACKEND`` overrides. The non-causal op has Triton kernels that keep the weighting, D skip and group
broadcast in registers (the matmul form reads or writes x-sized tensors ~9 times, the kernels 3). HSM-SSD's
Triton path fuses the token softmax, a*B and the contraction with x; its N-column mixing and readout are weight
GEMMs left to cuBLAS.

FLOPs (recorded with ``visionssm.ops._flops``; 2 per multiply-add like torch's FlopCounterMode; the formulas are
:func:`causal_flops`, :func:`noncausal_flops`, :func:`hsm_flops`):
causal = 9*B*L*H*P*N (the scan convention of DESIGN.md) + B*L*H*P per D and per z;
non-causal = 4*B*L*H*P*N (state build + readout) + B*L*H*P (weights) + B*L*H*P (D);
HSM = 4*B*dim*L*N (state build + readout) + 6*B*N*dim*inner (the two mixing matmuls).
The torch paths (and HSM's cuBLAS part) are aten matmuls that FlopCounterMode sees too: a counter that adds these
numbers must swap the op for a shape-only stand-in (as train/summary.py does for the selective scan).
"""

from __future__ import annotations

import os

import torch

from .. import _flops
from .chunked import hsm_ssd_matmul, ssd_causal_chunked, ssd_noncausal_matmul
from .reference import hsm_ssd_reference, ssd_causal_reference, ssd_noncausal_reference

BACKENDS = ("reference", "torch", "triton")

__all__ = [
    "ssd_causal", "ssd_noncausal", "hsm_ssd", "ssd_causal_reference", "ssd_noncausal_reference", "hsm_ssd_reference",
    "BACKENDS", "resolve_backend", "causal_flops", "noncausal_flops", "hsm_flops",
]


def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def resolve_backend(backend: str | None, device: torch.device, op: str = "ssd") -> str:
    """None -> $VISIONSSM_BACKEND, else "triton" for CUDA tensors when Triton imports, else "torch"."""
    if backend is None:
        backend = os.environ.get("VISIONSSM_BACKEND") or None
    if backend is None:
        return "triton" if device.type == "cuda" and _triton_available() else "torch"
    if backend not in BACKENDS:
        raise ValueError(f"{op}: unknown backend {backend!r}; choose one of {BACKENDS}")
    return backend


def causal_flops(batch, length, heads, headdim, nstate, has_d=False, has_z=False) -> int:
    elems = batch * length * heads * headdim
    return 9 * elems * nstate + elems * (int(has_d) + int(has_z))


def noncausal_flops(batch, length, heads, headdim, nstate, has_d=False) -> int:
    elems = batch * length * heads * headdim
    return 4 * elems * nstate + elems * (1 + int(has_d))


def hsm_flops(batch, dim, length, nstate, inner) -> int:
    return 4 * batch * dim * length * nstate + 6 * batch * nstate * dim * inner


def _shape(t) -> tuple:
    return tuple(t.shape)


def _check_ssd(op, x, dt, A, B, C, D, dt_bias):
    if x.dim() != 4:
        raise ValueError(f"{op}: x must be (batch, L, heads, headdim), got shape {_shape(x)}")
    batch, length, heads, headdim = x.shape
    if _shape(dt) != (batch, length, heads):
        raise ValueError(f"{op}: dt must be (batch={batch}, L={length}, heads={heads}), got {_shape(dt)}")
    if _shape(A) != (heads,):
        raise ValueError(f"{op}: A must be (heads={heads},), got {_shape(A)}")
    if B.dim() != 4 or B.shape[:2] != (batch, length):
        raise ValueError(f"{op}: B must be (batch={batch}, L={length}, groups, N), got {_shape(B)}")
    if _shape(C) != _shape(B):
        raise ValueError(f"{op}: C shape {_shape(C)} != B shape {_shape(B)}")
    if heads % B.shape[2] != 0:
        raise ValueError(f"{op}: heads={heads} is not divisible by B's groups={B.shape[2]}")
    if D is not None and _shape(D) not in ((heads,), (heads, headdim)):
        raise ValueError(f"{op}: D must be (heads={heads},) or (heads, headdim={headdim}), got {_shape(D)}")
    if dt_bias is not None and _shape(dt_bias) != (heads,):
        raise ValueError(f"{op}: dt_bias must be (heads={heads},), got {_shape(dt_bias)}")


def ssd_causal(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int = 64,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    initial_state: torch.Tensor | None = None,
    return_last_state: bool = False,
    backend: str | None = None,
):
    """Causal SSD (Mamba-2), the contract of mamba_ssm's ``mamba_chunk_scan_combined``.

    dt <- softplus(dt + dt_bias) if asked;  h_t = exp(dt_t A_h) h_{t-1} + dt_t x_t B_t^T  (h: (headdim, N) per head);
    y_t = h_t C_t + D x_t;  y *= silu(z) if z is given.  A < 0 gives decays in (0, 1).
    initial_state / last state: ``(batch, heads, headdim, N)``. ``chunk_size`` only affects speed and rounding.
    Returns y ``(batch, L, heads, headdim)`` in x's dtype, and the last state (float32 or wider) if asked.
    """
    op = "ssd_causal"
    _check_ssd(op, x, dt, A, B, C, D, dt_bias)
    batch, length, heads, headdim = x.shape
    nstate = B.shape[3]
    if z is not None and z.shape != x.shape:
        raise ValueError(f"{op}: z shape {_shape(z)} != x shape {_shape(x)}")
    if initial_state is not None and _shape(initial_state) != (batch, heads, headdim, nstate):
        raise ValueError(
            f"{op}: initial_state must be (batch={batch}, heads={heads}, headdim={headdim}, N={nstate}), "
            f"got {_shape(initial_state)}"
        )
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"{op}: chunk_size must be a positive int, got {chunk_size!r}")
    _flops.add(op, causal_flops(batch, length, heads, headdim, nstate, D is not None, z is not None))
    which = resolve_backend(backend, x.device, op)
    kw = dict(D=D, z=z, dt_bias=dt_bias, dt_softplus=dt_softplus, initial_state=initial_state,
              return_last_state=return_last_state)
    if which == "reference":
        return ssd_causal_reference(x, dt, A, B, C, **kw)
    if which == "torch":
        return ssd_causal_chunked(x, dt, A, B, C, chunk_size, **kw)
    return _triton_op(op)(x, dt, A, B, C, chunk_size, **kw)


def ssd_noncausal(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    interleaved: bool = False,
    backend: str | None = None,
):
    """Non-causal SSD of VSSD: per head a global state H = sum_j w_j x_j B_j^T with w = dt * A, read by every token:
    y_i = H C_i + D x_i. No decay, mask or normaliser.

    VSSD's released configs (``ssd_positve_dA=True``) use w = dt * exp(A_log) > 0: pass ``A = exp(A_log)``.
    ``interleaved=True``: head h reads group h % groups, as VSSD's ngroups > 1 code splits heads
    (YuHengsss/VSSD classification/models/mamba2.py); the default is Mamba-2's h // (heads/groups).
    Returns y ``(batch, L, heads, headdim)`` in x's dtype.
    """
    op = "ssd_noncausal"
    _check_ssd(op, x, dt, A, B, C, D, dt_bias)
    _flops.add(op, noncausal_flops(*x.shape, B.shape[3], D is not None))
    which = resolve_backend(backend, x.device, op)
    kw = dict(D=D, dt_bias=dt_bias, dt_softplus=dt_softplus, interleaved=interleaved)
    if which == "reference":
        return ssd_noncausal_reference(x, dt, A, B, C, **kw)
    if which == "torch":
        return ssd_noncausal_matmul(x, dt, A, B, C, **kw)
    return _triton_op(op)(x, dt, A, B, C, **kw)


def hsm_ssd(
    x: torch.Tensor,
    dt: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    W_hz: torch.Tensor,
    W_out: torch.Tensor,
    D: torch.Tensor,
    A: torch.Tensor | None = None,
    backend: str | None = None,
):
    """EfficientViM's HSM-SSD: a = softmax over L of (dt + A); h = x (a B)^T ``(batch, dim, N)``;
    [h1; g] = W_hz h; h2 = W_out (h1 silu(g) + D h1); y = h2 C.

    x ``(batch, dim, L)``; dt, B, C ``(batch, N, L)``; W_hz ``(2*inner, dim)`` and W_out ``(dim, inner)`` are the
    1x1 Conv1d weights without their last axis; D ``(1,)``; A ``(N,)`` is inert (softmax over L cancels it).
    Returns (y ``(batch, dim, L)``, h2 ``(batch, dim, N)``) in x's dtype.
    """
    op = "hsm_ssd"
    if x.dim() != 3:
        raise ValueError(f"{op}: x must be (batch, dim, L), got shape {_shape(x)}")
    batch, dim, length = x.shape
    if dt.dim() != 3 or dt.shape[0] != batch or dt.shape[2] != length:
        raise ValueError(f"{op}: dt must be (batch={batch}, N, L={length}), got {_shape(dt)}")
    nstate = dt.shape[1]
    for name, t in (("B", B), ("C", C)):
        if _shape(t) != _shape(dt):
            raise ValueError(f"{op}: {name} shape {_shape(t)} != dt shape {_shape(dt)}")
    if W_hz.dim() != 2 or W_hz.shape[1] != dim or W_hz.shape[0] % 2:
        raise ValueError(f"{op}: W_hz must be (2*inner, dim={dim}), got {_shape(W_hz)}")
    inner = W_hz.shape[0] // 2
    if _shape(W_out) != (dim, inner):
        raise ValueError(f"{op}: W_out must be (dim={dim}, inner={inner}), got {_shape(W_out)}")
    if D.numel() != 1:
        raise ValueError(f"{op}: D must hold one scalar, got shape {_shape(D)}")
    if A is not None and _shape(A) != (nstate,):
        raise ValueError(f"{op}: A must be (N={nstate},), got {_shape(A)}")
    _flops.add(op, hsm_flops(batch, dim, length, nstate, inner))
    which = resolve_backend(backend, x.device, op)
    if which == "reference":
        return hsm_ssd_reference(x, dt, B, C, W_hz, W_out, D.reshape(1), A)
    if which == "torch":
        return hsm_ssd_matmul(x, dt, B, C, W_hz, W_out, D.reshape(1), A)
    return _triton_op(op)(x, dt, B, C, W_hz, W_out, D.reshape(1), A)


def _triton_op(op: str):
    """The Triton implementation of ``op``; a one-line error when it cannot run here."""
    if not _triton_available():
        raise RuntimeError(f"{op}: backend='triton' needs Triton, which does not import here")
    try:
        if op == "ssd_causal":
            from .triton_causal import ssd_causal_triton as kernel
        elif op == "ssd_noncausal":
            from .triton_noncausal import ssd_noncausal_triton as kernel
        else:
            from .triton_hsm import hsm_ssd_triton as kernel
    except ImportError as e:
        raise RuntimeError(f"{op}: backend='triton' is not available in this install ({e})") from e
    return kernel
