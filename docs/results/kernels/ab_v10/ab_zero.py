# ruff: noqa
# A/B of the split-K zero fill (session 20; needs the code of d6f5606, reverted after this A/B found no gain): torch.zeros before the kernel (off) against lowbit's zero kernel
# launched as the kernel's programmatic primary (on; the kernel waits for it only before its atomic adds). Same
# code, the switch is common.dependent_launch; each format at its tuned configuration, rotated copies, one CUDA
# graph (benchmarks/gpu_kernels.py's Timer), on/off interleaved. From the repository root:
#   python3 docs/results/kernels/ab_v10/ab_zero.py OUT.json [FORMAT..]  (names of gpu_kernels.lowbit_formats)
import json, sys
sys.path.insert(0, "benchmarks")
import torch
from gpu_kernels import Timer, kernel_fns, lowbit_formats, n_copies, state_bytes
from lowbit.kernels.triton import common
dev = torch.device("cuda")
timer = Timer(dev, 20)
l2 = torch.cuda.get_device_properties(dev).L2_cache_size
names = sys.argv[2:] or ["mixed 2/3/4 tables", "table4", "uniform4 g128", "aqlm 1x16"]
on = common.dependent_launch
rows = []
for name in names:
    kind, build = lowbit_formats()[name]
    prepare, run, tuning = kernel_fns(kind)
    for n, k in ((4096, 4096), (4096, 11008), (11008, 4096)):
        qw = build(n, k, dev)
        st = prepare(qw, dev)
        copies = [st] + [prepare(qw, dev) for _ in range(n_copies(state_bytes(st), l2) - 1)]
        for m in (1, 16):
            x = torch.randn(m, k, device=dev).half()
            first = run(st, x).float()  # tunes (untimed) on first use
            for rep in range(2):
                for mode in ("off", "on"):
                    common.dependent_launch = on if mode == "on" else (lambda x: False)
                    try:
                        ref = run(st, x).float()
                        us = timer([lambda s=s: run(s, x) for s in copies])[0]
                    finally:
                        common.dependent_launch = on
                    diff = float((ref - first).abs().max() / first.abs().max())
                    rows.append(dict(format=name, shape=[n, k], batch=m, rep=rep, zero=mode, us=us, diff_to_first=diff))
                    print(name, n, k, m, rep, mode, f"{us:.2f}", f"{diff:.1e}", flush=True)
json.dump(rows, open(sys.argv[1], "w"), indent=1)
