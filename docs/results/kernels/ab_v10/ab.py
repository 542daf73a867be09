# ruff: noqa
# A/B of additive-kernel versions on the GPU (session 20): the same random weights, rotated copies, one CUDA graph
# (benchmarks/gpu_kernels.py's Timer), each version at the configuration its own tuner gives (the shipped tuned file,
# else in-process autotuning), versions interleaved. AB_FORMATS (2x8,1x16) and AB_BATCHES (1,16) narrow it.
# From the repository root:
#   python3 docs/results/kernels/ab_v10/ab.py OUT.json VERSION.. (files docs/results/kernels/ab_v10/VERSION.py)
import importlib.util, json, sys, os
sys.path.insert(0, "benchmarks")
import torch
from gpu_kernels import Timer, n_copies, state_bytes
from lowbit.kernels.triton.random_weights import random_additive
dev = torch.device("cuda")
here = os.path.dirname(__file__)
mods = {}
for name in sys.argv[2:]:
    spec = importlib.util.spec_from_file_location(name, os.path.join(here, name + ".py"))
    mods[name] = sys.modules[name] = importlib.util.module_from_spec(spec); spec.loader.exec_module(mods[name])
timer = Timer(dev, 20)
l2 = torch.cuda.get_device_properties(dev).L2_cache_size
rows = []
FORMATS = [tuple(map(int, f.split("x"))) for f in os.environ.get("AB_FORMATS", "2x8,1x16").split(",")]
BATCHES = [int(b) for b in os.environ.get("AB_BATCHES", "1,16").split(",")]
for m_cb, b in FORMATS:
    for n, k in ((4096, 4096), (4096, 11008), (11008, 4096)):
        qw = random_additive(n, k, m_cb, b, 0, dev)
        for m in BATCHES:
            x = torch.randn(m, k, device=dev).half()
            ref = None
            for rep in range(2):
                for name, mod in mods.items():
                    st = mod.prepare(qw, dev)
                    y = mod.run(st, x).float()  # tunes (untimed) on first use
                    ref = y if ref is None else ref
                    err = float((y - ref).abs().max() / ref.abs().max())
                    copies = [st] + [mod.prepare(qw, dev) for _ in range(n_copies(state_bytes(st), l2) - 1)]
                    us = timer([lambda s=s: mod.run(s, x) for s in copies])[0]
                    rows.append(dict(version=name, format=f"{m_cb}x{b}", shape=[n, k], batch=m, rep=rep, us=us,
                                     diff_to_first=err))
                    print(name, f"{m_cb}x{b}", n, k, m, rep, f"{us:.2f}", f"{err:.1e}", flush=True)
json.dump(rows, open(sys.argv[1], "w"), indent=1)
