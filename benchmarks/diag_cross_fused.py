"""Per-kernel times, registers and spills of the fused cross scan at VMamba-T's stage shapes (batch 128, bf16).

    python benchmarks/diag_cross_fused.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import triton
from triton.testing import do_bench

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cross_fused import STAGES, inputs  # noqa: E402

from visionssm.ops.scan_routes import triton_cross_fused as tcf  # noqa: E402


def main():
    launched = []
    for name in ("cross_summary_kernel", "cross_carry_kernel", "cross_output_kernel"):
        kern = getattr(tcf, name)

        class Spy:
            def __init__(self, k, n):
                self.k, self.n = k, n

            def __getitem__(self, grid):
                def launch(*args, **kw):
                    launched.append((self.n, grid, args, kw, self.k))
                    return self.k[grid](*args, **kw)
                return launch
        setattr(tcf, name, Spy(kern, name))
    for ch, H, W, R in STAGES:
        x = inputs(128, ch, H, W, R)
        launched.clear()
        with torch.no_grad():
            tcf.cross_scan_fused_triton(x["u"], x["x_dbl"], x["dt_weight"], x["A"], x["D"], x["delta_bias"], H, W,
                                        True)
        torch.cuda.synchronize()
        print(f"stage C={ch} H={H} W={W} R={R} config {tcf.cross_fused_config(H, W, ch)}")
        for n, grid, args, kw, k in launched:
            ms = do_bench(lambda k=k, grid=grid, args=args, kw=kw: k[grid](*args, **kw), warmup=10, rep=50,
                          return_mode="median")
            c = k[grid](*args, **kw)
            print(f"  {n:<22} grid {str(grid):<18} {ms:8.3f} ms  regs {getattr(c, 'n_regs', '?')}  "
                  f"spills {getattr(c, 'n_spills', '?')}  warps {kw.get('num_warps')}", flush=True)
    print("triton", triton.__version__)


if __name__ == "__main__":
    main()
