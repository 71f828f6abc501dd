#!/usr/bin/env bash
# Nsight Compute on one scan kernel (fwd or bwd) at a shape: details (stalls, pipes, occupancy, memory) and the
# per-instruction SASS table, into $OUT. Needs ncu on the PATH (the device image has it).
#   bash benchmarks/ncu_scan.sh [fwd|bwd] [batch,dim,L,N]
set -u
export PYTHONPATH=$PWD/src:${PYTHONPATH:-}
WHICH=${1:-fwd}
SHAPE=${2:-128,384,197,16}
python3 benchmarks/profile_scan_once.py $SHAPE > /dev/null 2>&1  # compile outside the profiler
M=sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active
M=$M,sm__pipe_alu_cycles_active.avg.pct_of_peak_sustained_active,smsp__issue_active.avg.pct_of_peak_sustained_active
M=$M,sm__inst_executed_pipe_lsu.avg.pct_of_peak_sustained_active,smsp__inst_executed.sum,smsp__inst_executed_pipe_xu.sum
ncu --set full --metrics $M --import-source no --kernel-name regex:selective_scan_$WHICH --launch-skip 1 --launch-count 1 \
  -o /tmp/$WHICH python3 benchmarks/profile_scan_once.py $SHAPE > "$OUT/ncu_${WHICH}_log.txt" 2>&1
ncu -i /tmp/$WHICH.ncu-rep --page details > "$OUT/${WHICH}_details.txt" 2>&1
ncu -i /tmp/$WHICH.ncu-rep --page raw --metrics $M > "$OUT/${WHICH}_pipes.txt" 2>&1
ncu -i /tmp/$WHICH.ncu-rep --page source --csv --print-source sass > "$OUT/${WHICH}_source.csv" 2>&1
grep -E "pipe|issue_active|inst_executed" "$OUT/${WHICH}_pipes.txt" | head -20
grep -E "Duration|Registers|Achieved Occupancy|Warp Cycles Per Issued|No Eligible|Issued Warp|Hit Rate|Throughput" \
  "$OUT/${WHICH}_details.txt" | head -40
