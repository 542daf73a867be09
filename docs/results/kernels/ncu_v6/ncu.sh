# Memory and stall metrics of the table GEMV (docs/results/kernels/ncu_v6/prof.py), on the GPU machine from the
# repository root: `bash ncu.sh BITS NAME CONFIG..` profiles this checkout's kernels at the configurations given
# (block_n,words,warps,stages) into $OUT/p/NAME.csv, then session 15's (commit 22aa767, its tree in .carry/v5) at
# 16,64,4,3, its tuned configuration, into $OUT/p/NAME_old.csv. All 3 launches of each configuration are profiled.
set -u
source scripts/device_paths.sh; export PYTHONPATH
mkdir -p $OUT/p
bits=$1; name=$2; shift 2
S="--section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats"
timeout 200 ncu $S --kernel-name regex:table_kernel --csv --page raw python3 docs/results/kernels/ncu_v6/prof.py $bits "$@" > $OUT/p/$name.csv 2> $OUT/p/$name.err; echo rc=$?
PYTHONPATH=$PWD/.carry/v5/kernels/src:$PYTHONPATH timeout 120 ncu $S --kernel-name regex:table_kernel --csv --page raw python3 docs/results/kernels/ncu_v6/prof.py $bits 16,64,4,3 > $OUT/p/${name}_old.csv 2> $OUT/p/${name}_old.err; echo rc=$?
wc -c $OUT/p/*.csv
