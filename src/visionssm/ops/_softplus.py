"""softplus for the Triton kernels, accurate to float32 rounding at every x."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def softplus(x):
    """log(1 + exp(x)); identity above 20 like torch.nn.functional.softplus.

    ``log(1 + e)`` loses e's low bits when e = exp(x) is small (1 + e rounds): at x = -9 that is a 5e-4 relative
    error in the step size. Below e = 1/32 a four-term series of log1p(e) is used instead (truncation < 2e-7
    relative); above it the rounding of 1 + e costs at most ~2e-6 relative.
    """
    e = tl.exp(tl.minimum(x, 20.0))
    series = e * (1.0 - e * (0.5 - e * (0.3333333333333333 - e * 0.25)))
    small = tl.where(e < 0.03125, series, tl.log(1.0 + e))
    return tl.where(x > 20.0, x, small)
