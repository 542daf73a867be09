# ruff: noqa
# Session 26: what a batch-1 GEMV split along K could gain if adding its partials cost nothing (an upper bound
# for a cheap stream-safe reduction). Each uniform layer (4-bit and 2-bit g128, the three benchmark shapes) is timed as
# gpu_kernels.py times it (rotated copies, one CUDA graph) at its per-GPU configuration and at forced split
# configurations, the latter with the kernel module's `output` returning torch.empty instead of torch.zeros (no zero
# fill; the fp16 atomic adds stay; wrong sums). From the repository root:
#   python3 docs/results/kernels/v16/split_gemv_bound.py OUT.json
import json, sys
sys.path.insert(0, "benchmarks")
import torch
from gpu_kernels import Timer, lowbit_formats
from lowbit.kernels.triton.timing import past_l2
from lowbit.kernels.triton import common, uniform
dev = torch.device("cuda")
timer = Timer(dev, 20)
keep = uniform.output
def no_zero(m, n, parts, like, zero=True):
    return keep(m, n, parts, like, zero=False)
SPLITS = [common.Config(8, 128, 8, 1, 2), common.Config(8, 128, 8, 2, 2), common.Config(16, 128, 8, 2, 2),
          common.Config(16, 128, 16, 1, 2), common.Config(16, 128, 8, 1, 2), common.Config(8, 128, 4, 2, 2),
          common.Config(16, 64, 4, 3, 2), common.Config(8, 128, 8, 2, 4), common.Config(16, 128, 16, 1, 4)]
rows = []
torch.manual_seed(0)
formats = lowbit_formats()
with torch.no_grad():
    for name in ("uniform4 g128", "uniform2 g128"):
        kind, build = formats[name]
        for n, k in ((4096, 4096), (4096, 11008), (11008, 4096)):
            qw = build(n, k, dev)
            st = uniform.prepare(qw, dev)
            copies = past_l2(st, dev)
            x = torch.randn(1, k, device=dev).half()
            uniform.run(st, x)
            key, _ = uniform.tuning(st, common.as_activations(x))
            tuned = common._BEST.get(common.key_text((*key, torch.cuda.get_device_name(dev))))
            for rep in range(2):
                for cfg in [None] + SPLITS:
                    uniform.output = keep if cfg is None else no_zero
                    us = timer([lambda s=s: uniform.run(s, x, cfg) for s in copies])[0]
                    uniform.output = keep
                    c = cfg or tuned
                    rows.append(dict(format=name, shape=[n, k], rep=rep, tuned=cfg is None, config=c.__dict__, us=us))
                    print(name, n, k, rep, "tuned" if cfg is None else "split-nofill", c, f"{us:.2f}", flush=True)
            del copies, st, qw
json.dump(rows, open(sys.argv[1], "w"), indent=1)
