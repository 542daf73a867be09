# ruff: noqa
# Session 26, on the GPU: the uniform kernel's split-K parts summed through a thread-block cluster (common.store_parts;
# more than 8 parts are not clustered, and add atomically as before)
# against the float64 reference, at forced configurations (batch 1, 16, 33; split 2-8; outlier programs), with the
# memory y is allocated from filled with NaN first (a part 0 that skipped an output would show); two runs must be
# bitwise equal (a fixed order of the sums); a CUDA graph replays the same.
#   python3 docs/results/kernels/v16/cluster_check.py
import os, torch
from lowbit.kernels.triton import common, uniform
from lowbit.kernels.triton.random_weights import random_uniform

dev = torch.device("cuda")
CASES = [(1, common.Config(16, 32, 2, 2, 2)), (1, common.Config(32, 64, 4, 3, 4)), (1, common.Config(64, 32, 2, 3, 8)),
         (16, common.Config(64, 16, 4, 4, 8)), (16, common.Config(64, 32, 4, 3, 2)), (16, common.Config(128, 16, 8, 4, 4)),
         (33, common.Config(64, 16, 4, 3, 4)), (5, common.Config(32, 32, 4, 3, 4))]
bad = 0
for cluster in ("1",):
    os.environ["LOWBIT_TRITON_CLUSTER"] = cluster
    for bits in (3, 4):
        for n_out in (None, 300):
            qw = random_uniform(4160, 2048, bits, 128, seed=bits, device=dev, n_outliers=n_out)
            st = uniform.prepare(qw, dev)
            w = qw.dequantize(torch.float64)
            for m, c in CASES:
                x = torch.randn(m, 2048, device=dev).half()
                ref = x.double() @ w.T
                torch.empty(64 << 20, device=dev).fill_(float("nan"))  # freed: y's memory is likely NaN
                y1 = uniform.run(st, x, c)
                y2 = uniform.run(st, x, c)
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    yg = uniform.run(st, x, c)
                g.replay()
                torch.cuda.synchronize()
                err = float((y1.double() - ref).abs().max() / ref.abs().max())
                same = bool(torch.equal(y1, y2)) and bool(torch.equal(y1, yg))
                parts = c.split_k + uniform.outlier_programs(st, c, common.block_m(m))
                on = common.clustered(parts, x)
                ok = err < 4e-3 and torch.isfinite(y1).all() and (same or not on)
                bad += not ok
                print(f"cluster={cluster} bits={bits} outliers={n_out} m={m} {c} parts={parts} "
                      f"clustered={on} err={err:.2e} deterministic={same} {'ok' if ok else 'FAIL'}",
                      flush=True)
print("failures:", bad)
