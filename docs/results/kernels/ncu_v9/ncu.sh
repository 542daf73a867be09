# Memory and stall metrics (session 19), on the GPU machine from the repository root:
#   bash docs/results/kernels/ncu_v9/ncu.sh NAME KERNEL_REGEX PROF_ARGS..   ->  $OUT/p/NAME.csv
# (PROF_ARGS as docs/results/kernels/ncu_v9/prof.py takes them); then summary.py prints the main metrics.
set -u
source scripts/device_paths.sh; export PYTHONPATH
mkdir -p $OUT/p
name=$1; kern=$2; shift 2
S="--section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats"
timeout 150 /usr/local/cuda/bin/ncu $S --kernel-name regex:$kern --csv --page raw python3 docs/results/kernels/ncu_v9/prof.py "$@" > $OUT/p/$name.csv 2> $OUT/p/$name.err; echo rc=$?
python3 docs/results/kernels/ncu_v9/summary.py $OUT/p/$name.csv
