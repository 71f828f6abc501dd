"""Selective scan (S6): public API and backend dispatch.

Shapes follow mamba_ssm's ``selective_scan_fn`` so users can switch:
u, delta, z ``(batch, dim, L)``; A ``(dim, N)``; B, C ``(batch, N, L)`` or ``(batch, groups, N, L)``;
D, delta_bias ``(dim,)``.
"""

from __future__ import annotations

import functools

import torch

from .. import _flops
from .._host import env_get
from .chunked import selective_scan_chunked
from .reference import selective_scan_reference

BACKENDS = ("reference", "torch", "triton")

__all__ = ["selective_scan", "selective_scan_reference", "selective_scan_chunked", "BACKENDS", "resolve_backend"]


def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def resolve_backend(backend: str | None, device: torch.device) -> str:
    """None -> $VISIONSSM_BACKEND, else "triton" for CUDA tensors when it is built and importable, else "torch"."""
    if backend is None:
        backend = env_get("VISIONSSM_BACKEND") or None
    if backend is None:
        return "triton" if device.type == "cuda" and _triton_kernel() is not None else "torch"
    if backend not in BACKENDS:
        raise ValueError(f"selective_scan: unknown backend {backend!r}; choose one of {BACKENDS}")
    return backend


@functools.cache
def _triton_kernel():
    """The Triton implementation, or None while it is not available in this install (looked up once: this runs
    on every call)."""
    if not _triton_available():
        return None
    try:
        from .triton_scan import selective_scan_triton
    except ImportError:
        return None
    return selective_scan_triton


def _check_shapes(u, delta, A, B, C, D, z, delta_bias):
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be (batch, dim, L), got shape {tuple(u.shape)}")
    batch, dim, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"selective_scan: delta shape {tuple(delta.shape)} != u shape {tuple(u.shape)}")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"selective_scan: A must be (dim={dim}, N), got {tuple(A.shape)}")
    n = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.dim() not in (3, 4):
            raise ValueError(
                f"selective_scan: {name} must be (batch, N, L) or (batch, groups, N, L), got {tuple(t.shape)}"
            )
        groups = 1 if t.dim() == 3 else t.shape[1]
        if t.shape[0] != batch or t.shape[-2] != n or t.shape[-1] != length:
            raise ValueError(
                f"selective_scan: {name} shape {tuple(t.shape)} does not match batch={batch}, N={n}, L={length}"
            )
        if dim % groups != 0:
            raise ValueError(f"selective_scan: dim={dim} is not divisible by {name}'s groups={groups}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and tuple(t.shape) != (dim,):
            raise ValueError(f"selective_scan: {name} must be (dim={dim},), got {tuple(t.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"selective_scan: z shape {tuple(z.shape)} != u shape {tuple(u.shape)}")


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    reverse: bool = False,
    return_last_state: bool = False,
    backend: str | None = None,
):
    """Selective scan, forward in time (or t = L-1 ... 0 with ``reverse=True``).

    delta <- softplus(delta + delta_bias) if asked;  h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t;
    y_t = <C_t, h_t> + D u_t;  y <- y * silu(z) if z is given.

    Returns y ``(batch, dim, L)`` in u's dtype, and the last state ``(batch, dim, N)`` (float32 or
    wider) if ``return_last_state``. ``backend`` is ``"reference" | "torch" | "triton"`` or None (best
    for the device; ``VISIONSSM_BACKEND`` overrides).
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    if _flops.counting():
        _flops.add("selective_scan", _flops.selective_scan_flops(*u.shape, A.shape[1], D is not None, z is not None))
    which = resolve_backend(backend, u.device)
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus, reverse, return_last_state)
    if which == "reference":
        return selective_scan_reference(*args)
    if which == "torch":
        return selective_scan_chunked(*args)
    kernel = _triton_kernel()
    if kernel is None:
        raise RuntimeError("selective_scan: backend='triton' is not available (Triton missing or kernels not built)")
    return kernel(*args)


from .bidirectional import bidirectional_selective_scan  # noqa: E402  (needs the names above)

__all__ += ["bidirectional_selective_scan"]
