# The kernel-package versions ab.py compares, from the repository root (session 21):
#   bash docs/results/kernels/ab_v11/versions.sh COMMIT..
# kt_<commit>/: lowbit/kernels/triton of a commit (its modules, relative imports and per-GPU file), as a package of
# its own (not kept in git: copies of committed files). a2c1a88: split-K GEMVs add fp16 partials with
# compare-and-swap loops (session 20's code); af680dd: vector reductions. With af680dd among the commits, also
# kt_loop/ (outliers_after_loop.patch on kt_af680dd): the outlier walk entirely after the main loop (only the row
# pointers loaded before it). "live" in ab.py is this checkout's package.
# The runs (python3 docs/results/kernels/ab_v11/ab.py OUT.json VERSION..):
#   ab_red_h100_v11.json: kt_a2c1a88 live (live = af680dd with the per-GPU file after the v11 sweeps)
#   ab_outliers_h100_v11.json: AB_ONLY=outliers .. kt_a2c1a88 live (live = kt_loop, after its own sweep)
#   ab_outliers2_h100_v11.json: AB_ONLY="uniform4 g128" AB_CONFIGS="8,128,8,2,1;8,128,8,1,1" .. kt_a2c1a88 kt_loop live
#     (live = kt_loop with the first chunk loaded and added before outliers_end's loop, not in it)
set -eu
d=docs/results/kernels/ab_v11
for c in "$@"; do
  rm -rf $d/kt_$c && mkdir -p $d/kt_$c
  git archive $c kernels/src/lowbit/kernels/triton | tar -x --strip-components=5 -C $d/kt_$c
  if [ "$c" = af680dd ]; then
    rm -rf $d/kt_loop && cp -r $d/kt_af680dd $d/kt_loop && patch -s -d $d/kt_loop -p1 < $d/outliers_after_loop.patch
  fi
done
