# ruff: noqa
# A/B of column-table kernel versions on the GPU (session 19): the same random weights, rotated copies, one CUDA
# graph (benchmarks/gpu_kernels.py's Timer), at fixed configurations, versions interleaved. From the repository root:
#   python3 docs/results/kernels/ab_v9/ab.py OUT.json VERSION.. (files docs/results/kernels/ab_v9/VERSION.py)
# AB_FORMATS (table4,table3,table2,mixed), AB_SHAPES (4096x4096,4096x11008) and AB_MIXED_CONFIGS=1 narrow it.
import importlib.util, json, sys, os
sys.path.insert(0, "benchmarks")
import torch
from gpu_kernels import Timer, n_copies, state_bytes
from lowbit.kernels.triton.common import Config
from lowbit.kernels.triton.random_weights import random_table, random_widths
dev = torch.device("cuda")
here = os.path.dirname(__file__)
mods = {}
for name in sys.argv[2:]:
    spec = importlib.util.spec_from_file_location(name, os.path.join(here, name + ".py"))
    mods[name] = sys.modules[name] = importlib.util.module_from_spec(spec); spec.loader.exec_module(mods[name])
timer = Timer(dev, 20)
l2 = torch.cuda.get_device_properties(dev).L2_cache_size
CONFIGS = {1: [(32, 512, 16, 1, 1), (32, 256, 8, 1, 1), (32, 1024, 8, 1, 1), (32, 128, 4, 1, 1)],
           16: [(32, 64, 4, 1, 4), (32, 128, 4, 1, 2)]}
if os.environ.get("AB_MIXED_CONFIGS"):  # the mixed kernel's chosen configurations (v9 sweeps)
    CONFIGS = {1: [(32, 128, 4, 1, 2), (32, 128, 4, 1, 1), (32, 256, 8, 1, 1), (32, 512, 16, 1, 1)],
               16: [(32, 64, 4, 1, 4), (32, 128, 4, 1, 4)]}
rows = []
FORMATS = os.environ.get("AB_FORMATS", "table4,table3,table2,mixed").split(",")
SHAPES = [tuple(map(int, s.split("x"))) for s in os.environ.get("AB_SHAPES", "4096x4096,4096x11008").split(",")]
for fmt in FORMATS:
    for n, k in SHAPES:
        bits = random_widths(k, (2, 3, 4), 0, dev) if fmt == "mixed" else int(fmt[-1])
        qw = random_table(n, k, bits, 0, dev)
        for m, cfgs in CONFIGS.items():
            x = torch.randn(m, k, device=dev).half()
            for cfg in cfgs:
                c = Config(*cfg)
                for rep in range(2):
                    for name, mod in mods.items():
                        st = mod.prepare(qw, dev)
                        copies = [st] + [mod.prepare(qw, dev) for _ in range(n_copies(state_bytes(st), l2) - 1)]
                        us = timer([lambda s=s: mod.run(s, x, c) for s in copies])[0]
                        rows.append(dict(version=name, format=fmt, shape=[n, k], batch=m, config=cfg, rep=rep, us=us))
                        print(name, fmt, n, k, m, cfg, rep, f"{us:.2f}", flush=True)
json.dump(rows, open(sys.argv[1], "w"), indent=1)
