# ruff: noqa
# Per-row GEMV errors on 60 small random uniform layers under Triton's interpreter (session 17): run once with the
# f16x2 experiment's kernels (commit 1f71e03's kernels/src first on PYTHONPATH) and once with v6's (c82cd06):
#   TRITON_INTERPRET=1 python3 docs/results/kernels/gemv_precision_v7.py OUT.json
# It prints the worst and median per-row relative error of the GEMV (max |y - ref| / max |ref| per row) and
# the worst of the batch path over 16 rows.
import torch, sys
from lowbit.kernels.triton import uniform
from lowbit.kernels.triton.random_weights import random_uniform
res = []
for seed in range(60):
    g = torch.Generator().manual_seed(seed)
    bits = [1,2,3,4][seed % 4]
    gs = [32, 64, 128][seed % 3]
    d_out = 1 + seed % 5
    qw = random_uniform(d_out, gs * (1 + seed % 3), bits, gs, seed=seed, device="cpu", n_outliers=0)
    x = torch.randn(16, qw.shape[1], generator=g).half()
    st = uniform.prepare(qw)
    ref = x.double() @ qw.dequantize(torch.float64).T
    e1 = []
    for r in range(3):
        y = uniform.run(st, x[r:r+1])
        e1.append(float((y.double() - ref[r:r+1]).abs().max()) / (float(ref[r:r+1].abs().max()) + 1e-6))
    yb = uniform.run(st, x)
    eb = float((yb.double() - ref).abs().max()) / (float(ref.abs().max()) + 1e-6)
    res.append((seed, bits, max(e1), eb))
import json; json.dump(res, open(sys.argv[1], 'w'))
print("gemv worst", max(r[2] for r in res), "median", sorted(r[2] for r in res)[30], "batch worst", max(r[3] for r in res))
