"""The selective-scan family's Triton kernels (and LayerNorm, depthwise conv, Linear+GELU) compile for sm_90 (H100) on a
machine without a GPU.

The interpreter runs the kernels' semantics but not the compiler: a non-constexpr global, a layout or dtype
error shows only when compiling (a module-level float used inside a kernel once passed every interpreter
test). triton.compile with a GPUTarget (ptxas included) catches those here. A subprocess, because
tests/conftest.py puts Triton in interpreter mode for this process. Companion: test_ssd_compile.py.
"""

from __future__ import annotations

import textwrap

from .compile_cases import run_compile_script

SCRIPT = textwrap.dedent(
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from visionssm.ops._segment_carry import segment_carry_kernel
    from visionssm.ops.dwconv2d.triton_dwconv import dwconv2d_fwd_kernel
    from visionssm.ops.layer_norm.triton_ln import _ln_fwd_kernel
    from visionssm.ops.linear_gelu.triton_linear_gelu import linear_gelu_kernel
    from visionssm.ops.scan_routes.triton_routed_bwd import routed_scan_bwd_kernel
    from visionssm.ops.scan_routes.triton_routed_fwd import routed_scan_fwd_kernel
    from visionssm.ops.scan_routes.triton_routed_smalln_bwd import routed_smalln_bwd_kernel
    from visionssm.ops.scan_routes.triton_routed_smalln_fwd import routed_smalln_fwd_kernel
    from visionssm.ops.selective_scan.triton_bc_layout import pack_bc_kernel, unpack_bc_grads_kernel
    from visionssm.ops.selective_scan.triton_bwd import selective_scan_bwd_kernel
    from visionssm.ops.selective_scan.triton_prep import backward_prep_kernel
    from visionssm.ops.selective_scan.triton_fwd import selective_scan_fwd_kernel
    from visionssm.ops.selective_scan.triton_smalln_bwd import smalln_bwd_kernel
    from visionssm.ops.selective_scan.triton_smalln_fwd import smalln_fwd_kernel

    DATA = {"u_ptr", "u2_ptr", "delta_ptr", "delta2_ptr", "z_ptr", "dout_ptr", "du_ptr", "ddelta_ptr", "dz_ptr",
            "x_ptr", "y_ptr"}

    def build(fn, consts, warps, bf16=DATA, **options):
        missing = [p.name for p in fn.params if p.is_constexpr and p.name not in consts]
        assert not missing, (fn.__name__, missing)
        sig = {n: "constexpr" if n in consts else "*i32" if n == "idx_ptr" else ("*bf16" if n in bf16 else "*fp32")
               if n.endswith("_ptr") else "i32" for n in fn.arg_names}
        triton.compile(ASTSource(fn, sig, constexprs=consts), target=GPUTarget("cuda", 90, 32),
                       options=dict(num_warps=warps, **options))

    common = dict(HAS_D=True, HAS_BIAS=True, SOFTPLUS=True)
    s6 = dict(common, HAS_Z=True, REVERSE=False, CHUNK=4, BLOCK_D=32, BLOCK_N=16, EVEN_N=True)
    for mode in (0, 1):
        for bidir, carry in ((False, False), (True, True)):
            build(selective_scan_fwd_kernel, dict(s6, MODE=mode, SAVE_STARTS=True, T=8, LOG_T=3, STAGES=2,
                                                  BIDIR=bidir, CARRY=carry, FOLD=carry and mode == 0, ASM=True,
                                                  M1_AHEAD=True, WRITE_AT=mode == 1), 1)
            for warp_reduce in (False, True):  # the PTX reduce-scatter of dB/dC and lg2.approx, or tl.sum/log2
                build(selective_scan_bwd_kernel, dict(s6, MODE=mode, HAS_DLAST=True, BIDIR=bidir, CARRY=carry,
                                                      WARP_REDUCE=warp_reduce, LOG_C=2, ASM=warp_reduce,
                                                      M1_AHEAD=warp_reduce), 1)
    build(selective_scan_fwd_kernel, dict(s6, MODE=1, SAVE_STARTS=False, T=8, LOG_T=3, STAGES=2, BIDIR=False,
                                          CARRY=True, FOLD=False, ASM=True, M1_AHEAD=False, WRITE_AT=True), 1)
    build(selective_scan_fwd_kernel, dict(s6, MODE=0, SAVE_STARTS=False, T=8, LOG_T=3, STAGES=1, BIDIR=False,
                                          CARRY=True, FOLD=False, ASM=False, M1_AHEAD=False, WRITE_AT=False), 1,
          maxnreg=128)
    # the no-grad forward reading 16-bit B/C (triton_scan._scan_layout)
    build(selective_scan_fwd_kernel, dict(s6, MODE=0, SAVE_STARTS=False, T=8, LOG_T=3, STAGES=2, BIDIR=True,
                                          CARRY=False, FOLD=False, ASM=True, M1_AHEAD=True, WRITE_AT=False), 1,
          DATA | {"B_ptr", "C_ptr", "B2_ptr", "C2_ptr"})
    xs = {"x0_ptr", "x1_ptr", "x2_ptr", "x3_ptr"}
    build(pack_bc_kernel, dict(BLOCK_L=64, BLOCK_N=16, PREP=True), 4, xs)  # 16-bit in, float32 out, prep
    build(pack_bc_kernel, dict(BLOCK_L=64, BLOCK_N=16, PREP=False), 4, xs | {"out_ptr"})  # 16-bit kept
    build(unpack_bc_grads_kernel, dict(BLOCK_L=64, BLOCK_N=16), 4, {"out_ptr"})
    build(backward_prep_kernel, dict(BLOCK=2048), 4)
    small = dict(common, HAS_Z=True, REVERSE=True, BLOCK_D=4, BLOCK_T=128, BLOCK_N=1)
    build(smalln_fwd_kernel, dict(small, MODE=0, SAVE_STARTS=True), 4)
    build(smalln_bwd_kernel, dict(small, MODE=0, HAS_DLAST=True), 4)
    routed = dict(common, U_SHARED=True, ACCUM=True, BLOCK_N=16)
    build(routed_scan_fwd_kernel, dict(routed, MODE=0, OUT_AT_STEP=False, SAVE_STARTS=True, CHUNK=16, BLOCK_D=32,
                                       EVEN_N=True, T=8), 1)
    build(routed_scan_bwd_kernel, dict(routed, MODE=0, G_SHARED=True, G_AT_STEP=False, CHUNK=16, BLOCK_D=32,
                                       EVEN_N=True), 1)
    rs = dict(common, U_SHARED=True, BLOCK_D=16, BLOCK_T=32, BLOCK_N=1)
    bc = DATA | {"B_ptr", "C_ptr"}
    for rank in (0, 6):
        build(routed_smalln_fwd_kernel, dict(rs, MODE=0, ACCUM=True, MERGE_OUT=True, OUT_AT_STEP=False,
                                             SAVE_STARTS=rank == 0, DT_RANK=rank), 2, bc)
    build(routed_smalln_bwd_kernel, dict(rs, MODE=0, G_SHARED=True, G_AT_STEP=False, ACCUM=False), 2, bc)
    for coef, init_t, reverse in ((True, True, True), (False, False, False)):
        build(segment_carry_kernel, dict(HAS_COEF=coef, HAS_INIT=True, INIT_T=init_t, REVERSE=reverse,
                                         BLOCK_S=32, BLOCK=128), 4)
    build(_ln_fwd_kernel, dict(HAS_W=True, HAS_B=True, BLOCK_R=16, BLOCK_C=128), 4)
    build(dwconv2d_fwd_kernel, dict(K=3, HAS_B=True, SILU=True, BLOCK_W=32, BLOCK_C=64), 4)
    build(linear_gelu_kernel, dict(HAS_B=True, PRECISION="tf32", UPCAST=False, BLOCK_M=128, BLOCK_N=128, BLOCK_K=32),
          8, {"x_ptr", "w_ptr", "y_ptr"}, num_stages=3)
    print("compiled")
    """
)


def test_scan_kernels_compile_for_sm90():
    run_compile_script(SCRIPT, timeout=600)
