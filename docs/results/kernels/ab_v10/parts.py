# ruff: noqa
# Where the AQLM 2x8 batch-1 time goes (session 20): for each shape, the table-of-dot-products kernel alone, the
# zero-fill of y alone, and for each configuration the whole call and the main kernel alone (table and y made
# beforehand). Same random weights, rotated copies, one CUDA graph (benchmarks/gpu_kernels.py's Timer).
#   python3 docs/results/kernels/ab_v10/parts.py OUT.json
import json, sys
sys.path.insert(0, "benchmarks")
import torch
from gpu_kernels import Timer, n_copies, state_bytes
from lowbit.kernels.triton import additive
from lowbit.kernels.triton.common import Config
from lowbit.kernels.triton.random_weights import random_additive
dev = torch.device("cuda")
timer = Timer(dev, 20)
l2 = torch.cuda.get_device_properties(dev).L2_cache_size
CFGS = [(c.block_n, c.words, c.num_warps, c.num_stages, c.split_k) for c in additive.LUT_CONFIGS]
CFGS += [(256, 16, 8, 2, 16), (512, 16, 16, 2, 16), (1024, 16, 16, 2, 32), (512, 16, 8, 2, 32), (256, 16, 8, 2, 32),
         (1024, 16, 8, 2, 16), (128, 16, 4, 2, 16), (256, 16, 4, 1, 16), (512, 8, 8, 2, 32), (256, 8, 8, 2, 32),
         (1024, 8, 16, 2, 32), (512, 32, 16, 2, 16)]
rows = []
for n, k in ((4096, 4096), (4096, 11008), (11008, 4096)):
    qw = random_additive(n, k, 2, 8, 0, dev)
    x = torch.randn(1, k, device=dev).half()
    st = additive.prepare(qw, dev)
    copies = [st] + [additive.prepare(qw, dev) for _ in range(n_copies(state_bytes(st), l2) - 1)]
    dots = timer([lambda s=s: additive.dot_table(s, x) for s in copies])[0]
    zero = timer([lambda: torch.zeros(1, n, device=dev, dtype=torch.float16)])[0]
    print(n, k, f"dots {dots:.2f} zeros {zero:.2f}", flush=True)
    rows.append(dict(shape=[n, k], part="dots", us=dots))
    rows.append(dict(shape=[n, k], part="zeros", us=zero))
    lut = additive.dot_table(st, x)
    y = torch.zeros(1, n, device=dev, dtype=torch.float16)
    for cfg in CFGS:
        c = Config(*cfg)
        full = timer([lambda s=s: additive.run(s, x, c) for s in copies])[0]
        dt, out = additive.dot_table, additive.output
        additive.dot_table, additive.output = (lambda *a: lut), (lambda *a, **k: y)
        try:
            main = timer([lambda s=s: additive.run(s, x, c) for s in copies])[0]
        finally:
            additive.dot_table, additive.output = dt, out
        print(n, k, cfg, f"full {full:.2f} main {main:.2f}", flush=True)
        rows.append(dict(shape=[n, k], part="full", config=cfg, us=full))
        rows.append(dict(shape=[n, k], part="main", config=cfg, us=main))
json.dump(rows, open(sys.argv[1], "w"), indent=1)
