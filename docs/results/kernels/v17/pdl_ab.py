# ruff: noqa
# Run on the kernels with pdl.patch applied (git apply docs/results/kernels/v17/pdl.patch): it sets uniform.PDL_MODE.
# Session 27: the uniform kernel launched as a programmatic dependent of the call before it (PDL), with and without
# a bulk L2 prefetch of its weights before it waits (uniform.PDL_MODE: 0 off, else 1 | 2 (prefetch) | 4 (the
# dependents launched after the main loop instead of at the start); PDL_AB_MODES), A/B in one process at the per-GPU
# configurations: the same random weights, rotated copies, one CUDA graph (benchmarks/gpu_kernels.py's Timer), modes
# interleaved, twice. Then a chain check: two layers, the second reading the first's output, graphed with PDL, must
# equal the eager chain without it bit for bit (GEMVs without split K are deterministic). From the repository root:
#   python3 docs/results/kernels/v17/pdl_ab.py OUT.json     (PDL_AB_ONLY, PDL_AB_BATCHES narrow it)
import dataclasses, json, os, sys
sys.path.insert(0, "benchmarks")
import torch
from gpu_kernels import Timer, lowbit_formats, kernel_fns
from lowbit.kernels.triton import common, uniform
from lowbit.kernels.triton.timing import past_l2

dev = torch.device("cuda")
gpu = torch.cuda.get_device_name(dev)
timer = Timer(dev, 20)
only = os.environ.get("PDL_AB_ONLY", "uniform4 g128,uniform3 g128,uniform2 g128,outliers,binary2").split(",")
batches = [int(b) for b in os.environ.get("PDL_AB_BATCHES", "1,16").split(",")]
modes = [int(v) for v in os.environ.get("PDL_AB_MODES", "0,1,3,5,7").split(",")]
rows = []
torch.manual_seed(0)
with torch.no_grad():
    # the chain check first
    prep, run, _ = kernel_fns("uniform")
    for bits in (4, 2):
        build = lowbit_formats()[f"uniform{bits} g128"][1]
        a, b = prep(build(4096, 4096, dev), dev), prep(build(4096, 4096, dev), dev)
        x = torch.randn(1, 4096, device=dev).half()
        uniform.PDL_MODE = 0
        ref = run(b, run(a, x))
        for mode in [v for v in modes if v > 0]:
            uniform.PDL_MODE = mode
            run(b, run(a, x))
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                outs = [run(b, run(a, x)) for _ in range(4)]
            g.replay()
            torch.cuda.synchronize()
            same = all(torch.equal(o, ref) for o in outs)
            print("chain", bits, mode, "equal" if same else "DIFFERENT", float((outs[-1].float() - ref.float()).abs().max()), flush=True)
            rows.append(dict(check="chain", bits=bits, mode=mode, equal=same))
    for name, (kind, build) in lowbit_formats().items():
        if kind not in ("uniform", "binary") or not any(o in name for o in only):
            continue
        prep, run, tuning = kernel_fns(kind)
        for n, k in ((4096, 4096), (4096, 11008), (11008, 4096)):
            qw = build(n, k, dev)
            for m in batches:
                x = torch.randn(m, k, device=dev).half()
                ref = x.float() @ qw.dequantize().T
                st = prep(qw, dev)
                copies = past_l2(st, dev)
                key, _ = tuning(st, common.as_activations(x))
                for rep in range(2):
                    for mode in modes:
                        uniform.PDL_MODE = mode
                        y = run(st, x).float()
                        err = float((y - ref).abs().max() / ref.abs().max())
                        cfg = common._BEST.get(common.key_text((*key, gpu)))
                        us = timer([lambda s=s: run(s, x) for s in copies])[0]
                        rows.append(dict(format=name, shape=[n, k], batch=m, mode=mode, rep=rep, us=us, rel_err=err,
                                         config=dataclasses.asdict(cfg) if cfg else None))
                        print(name, n, k, m, "mode", mode, rep, f"{us:.2f}", f"{err:.1e}", cfg, flush=True)
                del copies, st
            del qw
uniform.PDL_MODE = 0
json.dump(rows, open(sys.argv[1], "w"), indent=1)
