# ruff: noqa
# Launches profiled by ncu (docs/results/kernels/ncu_v6/ncu.sh, on the GPU machine): the 4-bit per-column
# table GEMV on 4096x4096 at the configurations given as arguments ("block_n,words,warps,stages"), 3 launches each.
import sys, torch
from lowbit.kernels.triton import table
from lowbit.kernels.triton.common import Config
from lowbit.kernels.triton.random_weights import random_table
dev = torch.device("cuda")
x = torch.randn(1, 4096, device=dev).half()
st = table.prepare_table(random_table(4096, 4096, int(sys.argv[1]), 0, dev), dev)
for arg in sys.argv[2:]:
    c = Config(*map(int, arg.split(",")))
    for _ in range(3):
        table.run(st, x, c)
    torch.cuda.synchronize()
print("done")
