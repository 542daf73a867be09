# Stall reasons (WarpStateStats, raw page) of the uniform 4-bit GEMV and torch's int4 kernel on 4096x4096,
# on the GPU machine from the repository root (profiles docs/results/kernels/ncu_v5/prof.py).
set -u
source scripts/device_paths.sh; export PYTHONPATH
mkdir -p $OUT/p
timeout 150 ncu --section WarpStateStats --kernel-name regex:uniform_kernel --launch-skip 4 --launch-count 1 --csv --page raw python3 docs/results/kernels/ncu_v5/prof.py > $OUT/p/uniform_stalls.csv 2> $OUT/p/u.err; echo rc=$?
timeout 150 ncu --section WarpStateStats --kernel-name regex:tinygemm --launch-skip 2 --launch-count 1 --csv --page raw python3 docs/results/kernels/ncu_v5/prof.py > $OUT/p/int4_stalls.csv 2> $OUT/p/i.err; echo rc=$?
wc -c $OUT/p/*.csv
