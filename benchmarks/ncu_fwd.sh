#!/usr/bin/env bash
# Nsight Compute on the scan's forward kernel at (128,384,197,16): details (stalls, pipes, occupancy) and the
# per-instruction SASS table, into $OUT. Needs ncu on the PATH (the device image has it).
set -u
SHAPE=${1:-128,384,197,16}
python3 benchmarks/profile_scan_once.py $SHAPE > /dev/null 2>&1  # compile outside the profiler
M=sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active
M=$M,sm__pipe_alu_cycles_active.avg.pct_of_peak_sustained_active,smsp__issue_active.avg.pct_of_peak_sustained_active
M=$M,sm__inst_executed_pipe_lsu.avg.pct_of_peak_sustained_active,smsp__inst_executed.sum,smsp__inst_executed_pipe_xu.sum
ncu --set full --metrics $M --import-source no --kernel-name regex:selective_scan_fwd --launch-skip 1 --launch-count 1 \
  -o /tmp/fwd python3 benchmarks/profile_scan_once.py $SHAPE > "$OUT/ncu_fwd_log.txt" 2>&1
ncu -i /tmp/fwd.ncu-rep --page details > "$OUT/fwd_details.txt" 2>&1
ncu -i /tmp/fwd.ncu-rep --page raw --metrics $M > "$OUT/fwd_pipes.txt" 2>&1
ncu -i /tmp/fwd.ncu-rep --page source --csv --print-source sass > "$OUT/fwd_source.csv" 2>&1
grep -E "pipe|issue_active|inst_executed" "$OUT/fwd_pipes.txt" | head -20
grep -E "Duration|Registers|Achieved Occupancy|Warp Cycles Per Issued|No Eligible|Issued Warp" "$OUT/fwd_details.txt" | head -20
