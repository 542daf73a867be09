# ruff: noqa
# What the zero-filled output of split K costs a batch-16 uniform layer (session 22): the graphed time of
# torch.zeros alone, of the layer at its per-GPU configuration (split 8 at 4096²), and of the same kernel launched
# into an output that is not zero-filled (torch.empty: wrong sums, timing only). From the repository root:
#   python3 docs/results/kernels/ab_v12/zero_fill.py OUT.json
import json, sys, torch
from lowbit.kernels.triton import common, uniform
from lowbit.kernels.triton.random_weights import random_uniform
from lowbit.kernels.triton.timing import graph_us, past_l2
dev = torch.device("cuda")
rows = []
for n, k in ((4096, 4096), (4096, 11008), (11008, 4096)):
    qw = random_uniform(n, k, 4, 128, 0, dev)
    st = uniform.prepare(qw, dev)
    x = torch.randn(16, k, device=dev).half()
    uniform.run(st, x)  # the per-GPU file's configuration
    key, _ = uniform.tuning(st, common.as_activations(x))
    c = common._BEST[common.key_text((*key, torch.cuda.get_device_name(dev)))]
    states = past_l2(st, dev)
    t_zero = graph_us([lambda: torch.zeros(16, n, dtype=torch.float16, device=dev)] * len(states))
    t_run = graph_us([lambda s=s: uniform.run(s, x, c) for s in states])
    real_output = uniform.output
    uniform.output = lambda m, n_, parts, like, zero=True: real_output(m, n_, parts, like, zero=False)
    try:
        t_empty = graph_us([lambda s=s: uniform.run(s, x, c) for s in states])
    finally:
        uniform.output = real_output
    rows.append(dict(shape=[n, k], config=str(c), zeros_us=t_zero, layer_us=t_run, layer_without_zero_fill_us=t_empty))
    print(rows[-1], flush=True)
json.dump(rows, open(sys.argv[1], "w"), indent=1)
