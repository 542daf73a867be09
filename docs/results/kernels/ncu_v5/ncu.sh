set -u
source scripts/device_paths.sh; export PYTHONPATH
mkdir -p $OUT/p
S="--section SpeedOfLight --section WarpStateStats --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis --section SchedulerStats"
timeout 200 ncu $S --kernel-name regex:uniform_kernel --launch-skip 4 --launch-count 2 --csv --page details python3 docs/results/kernels/ncu_v5/prof.py > $OUT/p/uniform.csv 2> $OUT/p/uniform.err; echo rc=$?
timeout 150 ncu $S --kernel-name regex:"int4|Int4|tinygemm" --launch-skip 2 --launch-count 1 --csv --page details python3 docs/results/kernels/ncu_v5/prof.py > $OUT/p/int4.csv 2> $OUT/p/int4.err; echo rc=$?
wc -l $OUT/p/*.csv; tail -3 $OUT/p/uniform.err
