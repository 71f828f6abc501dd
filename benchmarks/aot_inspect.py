"""Compile a Triton kernel for sm_90 on a machine without a GPU and report ptxas registers / spills.

    python benchmarks/aot_inspect.py fwd|bwd MODE BD K WARPS [N] [--dump DIR]

Used to check a launch configuration's register use before spending GPU time on it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

# The token tensors of a bf16 call (bench_scan.py's inputs: B and C too); parameters, states, partials float32.
BF16_PTRS = {"u_ptr", "delta_ptr", "z_ptr", "B_ptr", "C_ptr", "out_ptr", "dout_ptr", "du_ptr", "ddelta_ptr", "dz_ptr"}


def main():
    which, mode, bd, k, warps = sys.argv[1], *(int(v) for v in sys.argv[2:6])
    n = int(sys.argv[6]) if len(sys.argv) > 6 and not sys.argv[6].startswith("--") else 16
    dump = sys.argv[sys.argv.index("--dump") + 1] if "--dump" in sys.argv else None
    from visionssm.ops.selective_scan.triton_tiled_bwd import tiled_bwd_kernel
    from visionssm.ops.selective_scan.triton_tiled_fwd import tiled_fwd_kernel

    kern = tiled_fwd_kernel if which == "fwd" else tiled_bwd_kernel
    names = kern.arg_names
    sig, consts = {}, {}
    flags = dict(MODE=mode, HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True, REVERSE=False, CARRY=True,
                 WRITE_LAST=False, HAS_ADJ=True, N=n, BLOCK_D=bd, K=k)
    for name in names:
        if name in flags:
            sig[name] = "constexpr"
            consts[(names.index(name),)] = flags[name]
        elif name.endswith("_ptr"):
            sig[name] = "*bf16" if name in BF16_PTRS else "*fp32"
        else:
            sig[name] = "i32"
    src = ASTSource(fn=kern, signature=sig, constexprs=consts)
    ck = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=warps))
    if dump:
        os.makedirs(dump, exist_ok=True)
        for ext in ("ttgir", "ptx", "llir"):
            open(os.path.join(dump, f"{which}{mode}.{ext}"), "w").write(ck.asm[ext])
    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/cuobjdump")
    open("/tmp/aot_k.cubin", "wb").write(ck.asm["cubin"])
    out = subprocess.run([cuobjdump, "--dump-resource-usage", "/tmp/aot_k.cubin"], capture_output=True,
                         text=True).stdout
    usage = re.findall(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", out)
    print(f"{which} MODE={mode} BD={bd} K={k} warps={warps} N={n}: REG/STACK/SHARED/LOCAL={usage}")

if __name__ == "__main__":
    main()
