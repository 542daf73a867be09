# ruff: noqa
"""Batch-16 outliers: does the order of entries inside a row tile matter? (session 24 diagnostic)

Hypothesis: the batch outlier programs gather x[m, col] for 16 rows m per entry; with entries sorted by
(row, col) a chunk's columns are spread over all of K, so each entry costs 16 L2 sectors. Sorted by column
inside tiles of T rows (indptr unchanged at multiples of T, so tiles of 64 or 128 rows stay correct) a
chunk's entries share sectors. Times each layer at its tuned batch-16 configuration, both orders, one CUDA
graph each (lowbit.kernels.triton.timing), and checks the sorted order's output against the shipped one.

python3 docs/results/kernels/v14/outlier_order.py OUT.json
"""
import json
import sys
from dataclasses import replace

import torch

from lowbit.kernels.triton import common, uniform
from lowbit.kernels.triton import random_weights as rw
from lowbit.kernels.triton.timing import graph_us, past_l2


def tile_col_sorted(o: common.Outliers, n_rows: int, t: int) -> common.Outliers:
    rows = o.rows.to(torch.int32) & 0xFFFF
    cols = o.cols.to(torch.int32) & 0xFFFF
    order = torch.argsort((rows // t).long() * 65536 + cols.long())
    return replace(o, rows=o.rows[order].contiguous(), cols=o.cols[order].contiguous(),
                   delta=o.delta[order].contiguous())


def main(out: str) -> None:
    dev = torch.device("cuda")
    gpu = torch.cuda.get_device_name(dev)
    res = {"gpu": gpu, "rows": []}
    for (n, k) in [(4096, 4096), (4096, 11008), (11008, 4096)]:
        qw = rw.random_uniform(n, k, 4, 128, 0, dev, outlier_frac=0.005)
        st = uniform.prepare(qw, dev)
        x = torch.randn(16, k, device=dev, dtype=torch.float16)
        key, configs = uniform.tuning(st, x)
        c = common.choose(key, configs, lambda s, cc: uniform._launch(s, x, cc), st, dev)
        y0 = uniform.run(st, x, c)
        row = {"shape": [n, k], "config": c.__dict__, "nnz": int(st.outliers.delta.numel())}
        states = past_l2(st, dev)
        row["row_order_us"] = graph_us([lambda s=s: uniform._launch(s, x, c) for s in states])
        for t in (64, 128):
            if c.block_n % t:
                continue
            st2 = replace(st, outliers=tile_col_sorted(st.outliers, n, t))
            y2 = uniform.run(st2, x, c)
            err = float((y2.float() - y0.float()).abs().max() / y0.float().abs().max())
            s2 = past_l2(st2, dev)
            row[f"col_sorted_{t}_us"] = graph_us([lambda s=s: uniform._launch(s, x, c) for s in s2])
            row[f"col_sorted_{t}_rel_diff"] = err
            del s2
        plain = replace(st, outliers=None)
        kp, cp = uniform.tuning(plain, x)
        c0 = common.choose(kp, cp, lambda s, cc: uniform._launch(s, x, cc), plain, dev)
        sp = past_l2(plain, dev)
        row["no_outliers_us"] = graph_us([lambda s=s: uniform._launch(s, x, c0) for s in sp])
        row["no_outliers_config"] = c0.__dict__
        del states, sp
        print(row, flush=True)
        res["rows"].append(row)
    with open(out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
