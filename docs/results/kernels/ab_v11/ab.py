# ruff: noqa
# A/B of whole kernel-package versions on the GPU (session 21): the same random weights, rotated copies, one CUDA
# graph (benchmarks/gpu_kernels.py's Timer), each version at the configuration its own tuner gives (its per-GPU
# file, else in-process autotuning), versions interleaved, twice. AB_ONLY (format names of gpu_kernels.py, comma
# separated substrings) and AB_BATCHES (1,16) narrow it; AB_CONFIGS ("8,128,8,2,1;8,128,8,1,1": block_n, words, warps,
# stages, split) times each version at each of these configurations instead. From the repository root:
#   python3 docs/results/kernels/ab_v11/ab.py OUT.json VERSION..   (live = lowbit.kernels.triton, else kt_<commit>)
import dataclasses, importlib, json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, "benchmarks")
sys.path.insert(0, here)
import torch
from gpu_kernels import Timer, lowbit_formats, map_tensors, n_copies, state_bytes
MODULES = {"uniform": "uniform", "table": "column_tables", "additive": "additive"}
dev = torch.device("cuda")
gpu = torch.cuda.get_device_name(dev)
timer = Timer(dev, 20)
l2 = torch.cuda.get_device_properties(dev).L2_cache_size
packages = {v: "lowbit.kernels.triton" if v == "live" else v for v in sys.argv[2:]}
only = os.environ.get("AB_ONLY", "uniform4 g128,uniform2 g128,table,aqlm 1x16").split(",")
batches = [int(b) for b in os.environ.get("AB_BATCHES", "1").split(",")]
forced = [tuple(map(int, c.split(","))) for c in os.environ["AB_CONFIGS"].split(";")] if os.environ.get("AB_CONFIGS") else [None]
rows = []
torch.manual_seed(0)
with torch.no_grad():
    for name, (kind, build) in lowbit_formats().items():
        if kind not in MODULES or not any(o in name for o in only):
            continue
        for n, k in ((4096, 4096), (4096, 11008), (11008, 4096)):
            qw = build(n, k, dev)
            for m in batches:
                x = torch.randn(m, k, device=dev).half()
                ref = x.float() @ qw.dequantize().T
                for rep in range(2):
                    for v, pkg in packages.items():
                      for fc in forced:
                        mod = importlib.import_module(f"{pkg}.{MODULES[kind]}")
                        common = importlib.import_module(f"{pkg}.common")
                        c = common.Config(*fc) if fc else None
                        st = mod.prepare(qw, dev)
                        y = mod.run(st, x, c).float()  # tunes (untimed) on first use
                        err = float((y - ref).abs().max() / ref.abs().max())
                        key, _ = mod.tuning(st, common.as_activations(x))
                        cfg = c or common._BEST.get(common.key_text((*key, gpu)))
                        copies = [st] + [map_tensors(st, torch.clone) for _ in range(n_copies(state_bytes(st), l2) - 1)]
                        us = timer([lambda s=s: mod.run(s, x, c) for s in copies])[0]
                        rows.append(dict(version=v, format=name, shape=[n, k], batch=m, rep=rep, us=us, rel_err=err,
                                         config=dataclasses.asdict(cfg) if cfg else None))
                        print(v, name, n, k, m, rep, f"{us:.2f}", f"{err:.1e}", cfg, flush=True)
                        del copies, st
            del qw
json.dump(rows, open(sys.argv[1], "w"), indent=1)
