# ruff: noqa
# What the zero fill of split-K outputs costs inside the benchmark's CUDA graph (session 25): each layer timed as
# gpu_kernels.py times it (rotated copies, one graph), at its per-GPU configuration, as shipped and with the kernel
# modules' `output` returning torch.empty instead of torch.zeros (wrong sums; the same kernels). From the repository root:
#   python3 docs/results/kernels/v15/zero_fill.py OUT.json
import importlib, json, sys
sys.path.insert(0, "benchmarks")
import torch
from gpu_kernels import Timer, lowbit_formats, map_tensors, n_copies, state_bytes
from lowbit.kernels.triton import common
MODULES = {"uniform": "uniform", "table": "column_tables", "additive": "additive"}
dev = torch.device("cuda")
timer = Timer(dev, 20)
l2 = torch.cuda.get_device_properties(dev).L2_cache_size
only = ["uniform4 g128", "uniform3 g128", "uniform2 g128", "table4", "mixed", "aqlm 2x8"]
keep = common.output
def no_zero(m, n, parts, like, zero=True):
    return keep(m, n, parts, like, zero=False)
rows = []
torch.manual_seed(0)
with torch.no_grad():
    for name, (kind, build) in lowbit_formats().items():
        if kind not in MODULES or not any(name == o or (o in name and "outliers" not in name) for o in only):
            continue
        mod = importlib.import_module(f"lowbit.kernels.triton.{MODULES[kind]}")
        for n, k in ((4096, 4096), (4096, 11008), (11008, 4096)):
            qw = build(n, k, dev)
            st = mod.prepare(qw, dev)
            copies = [st] + [map_tensors(st, torch.clone) for _ in range(n_copies(state_bytes(st), l2) - 1)]
            for m in (1, 16):
                x = torch.randn(m, k, device=dev).half()
                mod.run(st, x)  # tunes or reads the per-GPU file
                key, _ = mod.tuning(st, common.as_activations(x))
                cfg = common._BEST.get(common.key_text((*key, torch.cuda.get_device_name(dev))))
                for rep in range(2):
                    for variant in ("zeros", "empty"):
                        mod.output = keep if variant == "zeros" else no_zero
                        us = timer([lambda s=s: mod.run(s, x) for s in copies])[0]
                        mod.output = keep
                        rows.append(dict(format=name, shape=[n, k], batch=m, rep=rep, variant=variant, us=us,
                                         split_k=getattr(cfg, "split_k", None)))
                        print(name, n, k, m, rep, variant, f"{us:.2f}", cfg, flush=True)
            del copies, st, qw
json.dump(rows, open(sys.argv[1], "w"), indent=1)
