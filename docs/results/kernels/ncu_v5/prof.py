# ruff: noqa
# Launches profiled by ncu (run by docs/results/kernels/ncu_v5/ncu.sh on the GPU machine, at commit 4b9f702): uniform 4-bit and 2-bit GEMVs on
# 4096x4096 at the shipped configurations, and torch's int4 kernel on the same shape, 5 launches each.
import sys, torch
sys.path.insert(0, "benchmarks")
from gpu_kernels import torch_int4
from lowbit.kernels.triton import uniform
from lowbit.kernels.triton.common import Config
from lowbit.kernels.triton.random_weights import random_uniform
dev = torch.device("cuda")
x = torch.randn(1, 4096, device=dev).half()
for bits, c in [(4, Config(8, 128, 8, 1)), (2, Config(16, 128, 16, 1))]:
    st = uniform.prepare(random_uniform(4096, 4096, bits, 128, 0, dev), dev)
    for _ in range(5):
        uniform.run(st, x, c)
    torch.cuda.synchronize()
f, _ = torch_int4(4096, 4096, 128, dev)
xb = x.to(torch.bfloat16)
for _ in range(5):
    f(xb)
torch.cuda.synchronize()
print("done")
