# ruff: noqa
# What bounds AQLM batches (session 24): the additive kernel at batch 16, at each layer's per-GPU configuration,
# as shipped and with its codebook gathers replaced by values computed from the codes (the codes still loaded),
# timed as benchmarks/gpu_kernels.py times layers (rotated weight copies, one CUDA graph). The variant is a textual
# edit of the kernels (edited_kernels.py), which applies to 66c6b73's: KERNELS_SRC=a copy of that tree's
# kernels/src/lowbit/kernels/triton.
#   python3 docs/results/kernels/v14/aqlm_parts.py OUT.json   (repository root, packages on PYTHONPATH)
import dataclasses, json, sys, torch
sys.path.insert(0, "benchmarks")
sys.path.insert(0, "docs/results/kernels/v14")
from edited_kernels import edited
from gpu_kernels import Timer, map_tensors, n_copies, state_bytes
from lowbit.kernels.triton import additive as live, common as live_common
from lowbit.kernels.triton.random_weights import random_additive

EDITS = [("additive", "w = tl.load(CB + (c & ((1 << B) - 1))[:, :, None] * 8 + e[None, None, :])",
          "w = (((c & ((1 << B) - 1))[:, :, None] * 8 + e[None, None, :]) & 1023).to(tl.float16) * 0.001"),
         ("additive", "w += tl.load(CB + (i << B) * 8 + code[:, :, None] * 8 + e[None, None, :])",
          "w += ((code[:, :, None] * 8 + e[None, None, :]) & 1023).to(tl.float16) * 0.001")]


dev = torch.device("cuda")
gpu = torch.cuda.get_device_name(dev)
timer = Timer(dev, 20)
l2 = torch.cuda.get_device_properties(dev).L2_cache_size
mods = {"shipped": edited("aqlm parts shipped", [], "additive"), "no codebook gathers": edited("aqlm parts", EDITS, "additive")}
rows = []
for m_b in ((2, 8), (1, 16)):
    for d_out, d_in in [(4096, 4096), (4096, 11008), (11008, 4096)]:
        x = torch.randn(16, d_in, device=dev).half()
        qw = random_additive(d_out, d_in, *m_b, 0, dev)
        st0 = live.prepare(qw, dev)
        live.run(st0, x)
        key, _ = live.tuning(st0, live_common.as_activations(x))
        c = live_common._BEST[live_common.key_text((*key, gpu))]
        r = dict(format=f"aqlm {m_b[0]}x{m_b[1]}", shape=(d_out, d_in), config=dataclasses.astuple(c))
        for name, u in mods.items():
            st = u.prepare(qw, dev)
            states = [st] + [map_tensors(st, torch.clone) for _ in range(n_copies(state_bytes(st), l2) - 1)]
            r[name] = timer([lambda s=s: u.run(s, x, c) for s in states])[0]
            del states
        rows.append(r)
        print(r, flush=True)
json.dump(rows, open(sys.argv[1], "w"), indent=1)
