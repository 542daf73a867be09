# The kernel versions ab.py compares, from the repository root (session 19):
#   bash docs/results/kernels/ab_v9/versions.sh
# ct_<commit>.py: column_tables.py of a commit, importing lowbit's common module; ct_pb.py is e8a885c (4-bit planes
# in blocks of 32 columns) and ct_blocked.py the state measured before it, every width in blocks (ct_blocked.patch).
# ab_planes_h100_v9.json: python3 docs/results/kernels/ab_v9/ab.py OUT.json ct_1b4f496 ct_blocked
set -eu
d=docs/results/kernels/ab_v9
for c in 3fea4f3 011db9a 1b4f496 e8a885c; do
  git show $c:kernels/src/lowbit/kernels/triton/column_tables.py | sed 's/from \.common import/from lowbit.kernels.triton.common import/' > $d/ct_$c.py
done
cp $d/ct_e8a885c.py $d/ct_pb.py
patch -s -o $d/ct_blocked.py $d/ct_pb.py $d/ct_blocked.patch
