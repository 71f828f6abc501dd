#!/usr/bin/env bash
# One device call that runs the named parts in order, each under its own time limit, and returns
# benchmarks/results/ (plus logs) as one archive in $OUT.   bash benchmarks/gpu_all.sh tests scan routes ...
set -uo pipefail
FINAL=${OUT:-/tmp/visionssm_out}
export OUT=/tmp/visionssm_parts  # sub-scripts write here; only one archive goes back (8-file limit)
mkdir -p "$FINAL" "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src:${PYTHONPATH:-}
b=.vendor/mamba_ssm-2.3.2.post1/build_sm90
if ls .vendor/prebuilt/selective_scan_cuda.so.part* >/dev/null 2>&1 && [ ! -f "$b/selective_scan_cuda.so" ]; then
  mkdir -p "$b" && cat .vendor/prebuilt/selective_scan_cuda.so.part* > "$b/selective_scan_cuda.so"
fi
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
run() {  # name, seconds, command...
  local name=$1 secs=$2; shift 2
  echo "=== $name"
  timeout "$secs" "$@" > "$OUT/$name.log" 2>&1
  echo "rc=$?"; tail -n 25 "$OUT/$name.log"
}
for part in "$@"; do
  case $part in
    tests) run tests 300 python3 -m pytest tests -m gpu -q -rf --tb=short -p no:cacheprovider ;;
    scan) run scan 400 python3 benchmarks/bench_scan.py ;;
    routes) run routes 200 bash benchmarks/gpu_routes.sh ;;
    vmamba) run vmamba 240 bash benchmarks/gpu_vmamba.sh ;;
    ssd) run ssd 200 bash benchmarks/gpu_ssd.sh ;;
    ssdmodels) run ssdmodels 200 bash benchmarks/gpu_ssd_models.sh ;;
    bench) run bench 540 bash benchmarks/gpu_bench.sh ;;
    smalln) run smalln 250 bash benchmarks/gpu_smalln.sh ;;
    profile) run profile 150 python3 -m visionssm.cli profile vim_tiny_patch16_224 --res 1248 --batch 8 --dtype bf16 --device cuda --ops 15 ;;
    sweep16) run sweep16 170 python3 benchmarks/sweep_scan.py "" "SMALLN_MAXN=16;SMALLN_CFG=1,2048,4" \
      "SMALLN_MAXN=16;SMALLN_CFG=1,1024,2" "SMALLN_MAXN=16;SMALLN_CFG=2,1024,4" "SMALLN_MAXN=16;SMALLN_CFG=1,4096,8" ;;
    sweep16x) run sweep16x 400 python3 benchmarks/sweep_scan.py "" "SMALLN_MAXN=16" "SMALLN_MAXN=16;SMALLN_CFG=1,2048,4" \
      "SMALLN_MAXN=16;SMALLN_CFG=1,1024,2" "SMALLN_MAXN=16;SMALLN_CFG=2,1024,4" "SMALLN_MAXN=16;SMALLN_CFG=4,512,4" \
      "SMALLN_MAXN=16;SMALLN_CFG=2,2048,8" "SMALLN_MAXN=16;SMALLN_CFG=1,1024,1" ;;
    scantests) run scantests 150 python3 -m pytest -m gpu -q -rf --tb=short -p no:cacheprovider \
      tests/ops/test_selective_scan_triton.py -k "not smalln" ;;
    tiledtests) run tiledtests 200 python3 -m pytest -m gpu -q -rf --tb=short -p no:cacheprovider \
      tests/ops/test_selective_scan_tiled.py tests/ops/test_selective_scan_triton.py tests/ops/test_bidirectional_scan.py ;;
    tiledsweep) run tiledsweep 330 python3 benchmarks/sweep_scan.py "TILED=0" "" "TILED_CFG=4,4,4,4" \
      "TILED_CFG=8,8,8,8" "TILED_CFG=2,8,2,2" "TILED_CFG=8,4,8,8" "TILED_CFG=16,4,16,16" ;;
    probescan) run probescan 200 python3 benchmarks/probe_scan.py ;;
    profhost) run profhost 150 python3 benchmarks/profile_host.py scan scanfb ;;
    hostbreak) run hostbreak 150 python3 benchmarks/host_breakdown.py ;;
    ssdsweep) run ssdsweep 200 python3 benchmarks/bench_ssd.py --shapes 8,6085,12,64,64 --sweep --no-noncausal --no-fla --budget 170 \
      --out benchmarks/results/ssd_sweep_long.json ;;
    profvm) run profvm 110 python3 -m visionssm.cli profile vmamba_tiny_s1l8 --batch 128 --ops 40 ;;
    routesweep) run routesweep 150 python3 benchmarks/sweep_routes.py "" "SMALLN_CFG=16,64,4" "SMALLN_CFG=8,128,4" \
      "SMALLN_CFG=32,64,8" "SMALLN_CFG=16,256,8" "SMALLN_CFG=16,32,2" "SMALLN_CFG=32,32,4" ;;
    mergesweep) run mergesweep 120 bash -c "python3 benchmarks/sweep_routes.py '' 'MERGE=atomic' \
      'MERGE=atomic;SMALLN_CFG=32,32,4' && VISIONSSM_ROUTES_MERGE=atomic python3 benchmarks/bench_vmamba.py \
      --models vmamba_tiny_s1l8 --time-budget 40 --no-baseline --out /tmp/vm_atomic.json" ;;
    vmbench) run vmbench 100 python3 benchmarks/bench_vmamba.py --models vmamba_tiny_s1l8 --time-budget 60 --no-baseline \
      --out benchmarks/results/vmamba_explore.json ;;
    routetests) run routetests 240 python3 -m pytest -m gpu -q -p no:cacheprovider tests/ops/test_scan_routes_triton.py \
      tests/ops/test_layer_norm.py tests/layers tests/models/test_vmamba.py tests/models/test_msvmamba.py \
      tests/models/test_efficientvmamba.py ;;
    ssdcfg) run ssdcfg 200 python3 benchmarks/bench_ssd.py --sweep --no-noncausal --no-fla --budget 170 \
      --configs 32,4,4,512 32,4,4,2048 32,4,8,2048 --out benchmarks/results/ssd_cfg_h100.json ;;
    ncuroutes) run ncuroutes 150 ncu --kernel-name regex:routed_smalln_fwd --launch-skip 2 --launch-count 1 --set full \
      python3 benchmarks/profile_routes_once.py ;;
    crosstests) run crosstests 200 python3 -m pytest -m gpu -q -p no:cacheprovider tests/ops/test_cross_fused.py \
      tests/layers/test_ss2d.py tests/models/test_vmamba.py ;;
    crossfused) run crossfused 200 python3 benchmarks/bench_cross_fused.py --configs 16,64,4 32,32,4 16,32,4 ;;
    vmhead) run vmhead 150 python3 benchmarks/bench_vmamba.py --models vmamba_tiny_s1l8 --time-budget 60 \
      --out benchmarks/results/vmamba_explore.json ;;
    vmgraph) run vmgraph 200 bash -c "python3 benchmarks/bench_vmamba.py --models vmamba_tiny_s1l8 --cuda-graph \
      --no-baseline --time-budget 60 --out benchmarks/results/vmamba_graph.json && VISIONSSM_CROSS_FUSED=1 \
      python3 benchmarks/bench_vmamba.py --models vmamba_tiny_s1l8 --cuda-graph --no-baseline --time-budget 60 \
      --out benchmarks/results/vmamba_graph_fused.json" ;;
    bidir) run bidir 200 python3 benchmarks/bench_bidir.py ;;
    profbidir) run profbidir 120 python3 benchmarks/profile_bidir_once.py ;;
    bidirtests) run bidirtests 200 python3 -m pytest -m gpu -q -p no:cacheprovider tests/ops/test_bidirectional_scan.py \
      tests/ops/test_selective_scan_triton.py tests/layers/test_bimamba.py tests/models/test_vim.py ;;
    regsweep) run regsweep 200 python3 benchmarks/sweep_scan.py "" "MAXNREG=168" "MAXNREG=128" \
      "MAXNREG=128;PROGRAMS=2048" ;;
    ssdnew) run ssdnew 200 python3 benchmarks/bench_ssd.py --no-noncausal --no-fla --sweep --budget 170 \
      --configs 32,4,4,1024,2048 32,4,4,2048,4096 32,4,8,1024,2048 32,4,4,512,512 \
      --out benchmarks/results/ssd_h100_carry.json ;;
    vmvariants) run vmvariants 570 bash -c 'for v in "" VISIONSSM_CROSS_FUSED=1 \
      "VISIONSSM_CROSS_FUSED=1 VISIONSSM_CROSS_FUSED_MAX_RANK=64" VISIONSSM_DWCONV=triton VISIONSSM_MLP=triton \
      "VISIONSSM_CROSS_FUSED=1 VISIONSSM_DWCONV=triton VISIONSSM_MLP=triton"; do echo "--- variant: ${v:-defaults}"; \
      env $v python3 benchmarks/bench_vmamba.py --models vmamba_tiny_s1l8 --no-baseline --time-budget 60 \
      --out "benchmarks/results/vmamba_variant_$(echo ${v:-defaults} | tr " =" "__").json"; done' ;;
    ssdprobe) V=("" "CFG=32,8,4,1024,2048" "CFG=32,8,4,2048,2048" "CFG=32,8,4,512,2048" "CFG=32,2,4,1024,2048")
      run ssdprobe_long 300 python3 benchmarks/sweep_ssd.py --shapes 8,6085,12,64,64 -- "${V[@]}"
      run ssdprobe_short 200 python3 benchmarks/sweep_ssd.py --shapes 64,197,12,64,64 -- "${V[@]}" ;;
    ncussd) run ncussd 300 ncu --kernel-name regex:ssd_causal --launch-skip 4 --launch-count 6 \
      --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
      --section MemoryWorkloadAnalysis python3 benchmarks/profile_ssd_once.py ;;
    ssdtests) run ssdtests 240 python3 -m pytest -m gpu -q -p no:cacheprovider tests/ops/test_ssd_triton.py \
      tests/models/test_vssd.py tests/models/test_efficientvim.py ;;
    vmdt) run vmdt 330 bash -c "python3 benchmarks/bench_vmamba.py --models vmamba_tiny_s1l8 --time-budget 60 \
      --out benchmarks/results/vmamba_h100_dtproj.json && VISIONSSM_DT_PROJ=einsum python3 benchmarks/bench_vmamba.py \
      --models vmamba_tiny_s1l8 --no-baseline --time-budget 40 --out benchmarks/results/vmamba_variant_einsum.json" ;;
    ssdfinal) run ssdfinal 300 python3 benchmarks/bench_ssd.py --no-fla --budget 240 \
      --out benchmarks/results/ssd_h100_run${SSD_RUN:-7}.json ;;
    depthsweep) run depthsweep 300 python3 benchmarks/sweep_scan.py "" "PROGRAMS=256" "PROGRAMS=1024" ;;
    knobsweep) run knobsweep 330 python3 benchmarks/sweep_scan.py "" "STAGES=1" "T=16" "PROGRAMS=512" "PROGRAMS=2048" ;;
    bwdsweep) run bwdsweep 300 python3 benchmarks/sweep_scan.py "" "WARP_REDUCE=0" "CFG=32,8,1" "CFG=32,32,1" ;;
    bwdtests) run bwdtests 400 python3 -m pytest -m gpu -q -rf --tb=short -p no:cacheprovider \
      tests/ops/test_selective_scan_triton.py tests/ops/test_bidirectional_scan.py tests/ops/test_fastmath.py -k "not smalln" ;;
    breakdown) run breakdown 200 python3 benchmarks/kernel_breakdown.py ;;
    progcmp) run progcmp 200 bash -c "python3 benchmarks/kernel_breakdown.py --no-base --top 4 --shapes 32,768,197,16 \
      64,384,197,16 && VISIONSSM_SCAN_PROGRAMS=512 python3 benchmarks/kernel_breakdown.py --no-base --top 4 \
      --shapes 32,768,197,16 64,384,197,16" ;;
    regcmp) run regcmp 300 bash -c "VISIONSSM_SCAN_MAXNREG=168 python3 benchmarks/kernel_breakdown.py --no-base --top 2 && \
      VISIONSSM_SCAN_MAXNREG=128 python3 benchmarks/kernel_breakdown.py --no-base --top 2" ;;
    chunkcmp) run chunkcmp 300 bash -c "python3 benchmarks/kernel_breakdown.py --no-base --top 2 && \
      VISIONSSM_SCAN_CFG=32,8,1 python3 benchmarks/kernel_breakdown.py --no-base --top 2" ;;
    ncufwd) run ncufwd 300 bash benchmarks/ncu_scan.sh fwd ;;
    ncubwd) run ncubwd 300 bash benchmarks/ncu_scan.sh bwd ;;
    stagecmp) run stagecmp 250 bash -c "python3 benchmarks/kernel_breakdown.py --no-base --top 3 && \
      VISIONSSM_SCAN_STAGES=1 python3 benchmarks/kernel_breakdown.py --no-base --top 3" ;;
    compile) run compile 170 python3 benchmarks/probe_compile.py ;;
    *) echo "unknown part $part" ;;
  esac
done
tar czf "$FINAL/results.tgz" benchmarks/results "$OUT" 2>/dev/null
