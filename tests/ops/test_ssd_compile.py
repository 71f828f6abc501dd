"""The SSD Triton kernels compile for sm_90 (H100) on a machine without a GPU.

The interpreter runs the kernels' semantics but not the compiler: layout, dtype and dot-shape errors would only show
on a GPU. Compiling ahead of time (triton.compile with a GPUTarget, ptxas included) catches them here. Runs in a
subprocess because tests/conftest.py puts Triton in interpreter mode for this process.
"""

from __future__ import annotations

import textwrap

from .compile_cases import run_compile_script

SCRIPT = textwrap.dedent(
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from visionssm.ops.ssd import triton_hsm as hsm
    from visionssm.ops.ssd import triton_noncausal as nc
    from visionssm.ops.ssd.triton_causal_bwd import ssd_causal_bwd_kernel
    from visionssm.ops.ssd.triton_causal_fwd import ssd_causal_fwd_kernel

    FLOAT32 = ("dA_ptr", "dD_ptr", "dbias_ptr", "S_ptr", "dS_ptr", "states_ptr", "last_ptr", "h0_ptr", "seg_end_ptr",
               "seg_sum_ptr", "seg_dend_ptr", "dlast_ptr", "dh0_ptr", "A_ptr", "D_ptr", "bias_ptr", "lse_ptr", "a_ptr",
               "ga_ptr", "rowsum_ptr", "dB_ptr", "dC_ptr")

    def build(fn, consts, warps, dtype="bf16", f32=FLOAT32, stages=3):
        missing = [p.name for p in fn.params if p.is_constexpr and p.name not in consts]
        assert not missing, (fn.__name__, missing)
        sig = {n: "constexpr" if n in consts else ("*fp32" if n in f32 else "*" + dtype) if n.endswith("_ptr")
               else "i32" for n in fn.arg_names}
        triton.compile(ASTSource(fn, sig, constexprs=consts), target=GPUTarget("cuda", 90, 32),
                       options=dict(num_warps=warps, num_stages=stages))

    flags = dict(HAS_D=True, D_PER_CHANNEL=False, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True, HAS_H0=True, CHUNK=32,
                 BLOCK_P=64, BLOCK_N=64, PRECISION="tf32")
    fwd = dict(flags, FOLD=False)  # the forward kernel's own switch
    for mode, carry in ((0, True), (1, True), (0, False)):
        build(ssd_causal_fwd_kernel, dict(fwd, MODE=mode, SAVE_STATES=True, CARRY=carry), 4)
        build(ssd_causal_fwd_kernel, dict(fwd, MODE=mode, SAVE_STATES=False, CARRY=carry, CHUNK=64), 4)  # inference
        build(ssd_causal_fwd_kernel, dict(fwd, MODE=mode, SAVE_STATES=False, CARRY=carry, CHUNK=64, BLOCK_P=32), 4)
        for warps in (4, 8):
            build(ssd_causal_bwd_kernel, dict(flags, MODE=mode, HAS_DLAST=True, CARRY=carry, SPLIT_P=warps == 4),
                  warps, stages=1)
    build(ssd_causal_fwd_kernel, dict(fwd, MODE=0, SAVE_STATES=True, PRECISION="ieee", CARRY=False), 4, "fp32")
    build(ssd_causal_fwd_kernel, dict(fwd, MODE=0, SAVE_STATES=True, CARRY=True), 2)  # segmented output pass
    build(ssd_causal_fwd_kernel, dict(fwd, MODE=0, SAVE_STATES=False, CARRY=True, FOLD=True), 2)  # folds segments
    blocks = dict(BLOCK_L=64, BLOCK_P=64, BLOCK_N=64, PRECISION="tf32", INTERLEAVED=True)
    build(nc.nc_state_kernel, dict(blocks, WEIGHTED=True, HAS_BIAS=True, SOFTPLUS=True), 4)
    build(nc.nc_readout_kernel, dict(blocks, HAS_D=True, D_PER_CHANNEL=True), 4)
    build(nc.nc_bwd_kernel, dict(blocks, HAS_D=True, D_PER_CHANNEL=False, HAS_BIAS=True, SOFTPLUS=True), 8)
    hb = dict(HAS_A=True, BLOCK_D=64, BLOCK_N=64, BLOCK_L=64, PRECISION="tf32")
    build(hsm.hsm_state_fwd_kernel, hb, 8)
    build(hsm.hsm_state_bwd_kernel, hb, 8, f32=FLOAT32[:-2])
    print("compiled")
    """
)


def test_ssd_kernels_compile_for_sm90():
    run_compile_script(SCRIPT, timeout=300)
