# ruff: noqa
# Launches profiled by ncu (docs/results/kernels/ncu_v9/ncu.sh, on the GPU machine), 3 of each:
#   python3 prof.py aqlm D_OUT D_IN BATCH block_n,words,warps,stages,split ..   (AQLM 2x8)
#   python3 prof.py table D_OUT D_IN BATCH BITS|mixed 32,words,warps,1,split ..  (column tables)
#   python3 prof.py uniform|uniform_out D_OUT D_IN BATCH BITS block_n,words,warps,stages,split ..  (g128; _out: 0.5%
#   outliers; session 21)
import sys, torch
from lowbit.kernels.triton import additive, column_tables, uniform
from lowbit.kernels.triton.common import Config
from lowbit.kernels.triton.random_weights import random_additive, random_table, random_uniform, random_widths
dev = torch.device("cuda")
kind, n, k, m = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
x = torch.randn(m, k, device=dev).half()
if kind == "aqlm":
    st, run, cfgs = additive.prepare(random_additive(n, k, 2, 8, 0, dev)), additive.run, sys.argv[5:]
elif kind.startswith("uniform"):
    frac = 0.005 if kind == "uniform_out" else 0.0
    st = uniform.prepare(random_uniform(n, k, int(sys.argv[5]), 128, 0, dev, outlier_frac=frac))
    run, cfgs = uniform.run, sys.argv[6:]
else:
    bits = random_widths(k, (2, 3, 4), 0, dev) if sys.argv[5] == "mixed" else int(sys.argv[5])
    st, run, cfgs = column_tables.prepare(random_table(n, k, bits, 0, dev)), column_tables.run, sys.argv[6:]
for arg in cfgs:
    c = Config(*map(int, arg.split(",")))
    for _ in range(3):
        run(st, x, c)
    torch.cuda.synchronize()
print("done")
