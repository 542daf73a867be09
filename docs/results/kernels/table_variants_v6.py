# ruff: noqa
# Table GEMV variants on the H100 (from the repository root, packages on PYTHONPATH):
#   python3 docs/results/kernels/table_variants_v6.py OUT.json [d_out d_in]
# The word-rows-along-K layout with 16-entry table strides (measured before the per-width strides; both came in commit 8336984),
# with three ways to get T[k, q] x[k], chosen by LOWBIT_TABLE_GATHER at launch. Variants 1 and 2
# were local edits of segment_loop, measured and not committed; their inner step was
#   1: src = tl.load(T + tbase + i*WB*TS + tl.arange(0, 16)[None, :])           # (R, 16) table tile
#      acc += tl.gather(src.to(tl.float32) * x.to(tl.float32), q, axis=1)      # warp shuffles (SASS: 3-4 SHFL a code)
#   2: acc += tl.load(P + tbase + i*WB*TS + q)   with P = x[cols][:, None] * tables in fp32, built by torch in
#      _launch on every call (inside the timed call)
# and 0 is the committed 2-byte gather and FFMA. The switch is gone, so this script now times the committed
# kernel three times; its JSON is table_variants_h100_v6.json. Weights rotated past L2, calls in one CUDA graph
# (benchmarks/gpu_kernels.py's Timer).
import sys, os, json, dataclasses, torch
sys.path.insert(0, "benchmarks")
from gpu_kernels import Timer, map_tensors, n_copies, state_bytes
from lowbit.kernels.triton import table
from lowbit.kernels.triton.common import Config
from lowbit.kernels.triton.random_weights import random_table, random_widths
dev = torch.device("cuda"); timer = Timer(dev, 20)
l2 = torch.cuda.get_device_properties(dev).L2_cache_size
d_out, d_in = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (4096, 4096)
configs = [Config(4, 256, 2, 2), Config(8, 128, 4, 2), Config(16, 64, 4, 3), Config(16, 32, 4, 2), Config(32, 32, 4, 2),
           Config(32, 16, 4, 2), Config(64, 16, 4, 2), Config(16, 128, 8, 2), Config(32, 64, 8, 2), Config(64, 32, 8, 2)]
rows = []
x = torch.randn(1, d_in, device=dev).half()
for name, bits in [("table4", 4), ("table2", 2), ("mixed 2/3/4", random_widths(d_in, (2, 3, 4), 0, dev))]:
    qw = random_table(d_out, d_in, bits, 0, dev)
    ref = (x.double() @ qw.dequantize().double().T)
    st = table.prepare_table(qw, dev)
    states = [st] + [map_tensors(st, torch.clone) for _ in range(n_copies(state_bytes(st), l2) - 1)]
    for g in (0, 1, 2):
        os.environ["LOWBIT_TABLE_GATHER"] = str(g)
        for c in configs:
            try:
                err = ((table.run(st, x, c).double() - ref).abs().max() / ref.abs().max()).item()
                us = timer([lambda s=s: table.run(s, x, c) for s in states])[0]
            except Exception as e:
                print(name, g, c, "failed", str(e)[:200], flush=True)
                continue
            r = dict(format=name, shape=(d_out, d_in), gather=g, config=dataclasses.astuple(c), us=us, rel_err=err)
            rows.append(r); print(r, flush=True)
json.dump(rows, open(sys.argv[1], "w"), indent=1)
