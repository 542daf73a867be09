# The kernel-package versions ab.py compares, from the repository root (session 21):
#   bash docs/results/kernels/ab_v11/versions.sh COMMIT..
# kt_<commit>/: lowbit/kernels/triton of a commit (its modules, relative imports and per-GPU file), as a package of
# its own (not kept in git: copies of committed files). a2c1a88: split-K GEMVs add fp16 partials with
# compare-and-swap loops (session 20's code); "live" in ab.py is this checkout's package.
# The runs (python3 docs/results/kernels/ab_v11/ab.py OUT.json VERSION..):
#   ab_red_h100_v11.json: kt_a2c1a88 live
set -eu
d=docs/results/kernels/ab_v11
for c in "$@"; do
  rm -rf $d/kt_$c && mkdir -p $d/kt_$c
  git archive $c kernels/src/lowbit/kernels/triton | tar -x --strip-components=5 -C $d/kt_$c
done
