# The kernel-package variants of session 22's walker A/Bs (docs/results.md, v12), from the repository root:
#   bash docs/results/kernels/ab_v12/versions.sh
# Builds, next to ab_v11's copies (git-ignored), kt_f6b909a (outliers walked around the main loop in
# batches too) and one copy of the checkout's package per patch here:
#   walkers_walk1: walker programs for the GEMV as well; walkers_w2 / _w4: each walker takes 2 / 4 chunks;
#   walkers_first: walkers get the first pid_k instead of the last.
# Runs (python3 docs/results/kernels/ab_v11/ab.py OUT.json VERSION.. with AB_ONLY=outliers):
#   ab_walkers_h100_v12.json: AB_BATCHES=1,16 .. kt_f6b909a live kt_walk1
#   ab_walkers2_h100_v12.json: AB_BATCHES=16 .. live kt_w2 kt_w4
#   ab_walkers3_h100_v12.json: AB_BATCHES=16 .. live kt_first
set -eu
d=docs/results/kernels/ab_v11
bash $d/versions.sh f6b909a
for v in walk1 w2 w4 first; do
  rm -rf $d/kt_$v && cp -r kernels/src/lowbit/kernels/triton $d/kt_$v && rm -rf $d/kt_$v/__pycache__
  patch -s -d $d/kt_$v -p1 < docs/results/kernels/ab_v12/walkers_$v.patch
done
