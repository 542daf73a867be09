# ruff: noqa
# AQLM batches with the codebooks gathered by inline PTX in the dot operand's layout (session 24): the variant
# "swapped + words by PTX loads" of aqlm_sass.py against the shipped kernel, batch 16, every batch candidate
# configuration (common.DOT_CONFIGS) of each layer, timed as benchmarks/gpu_kernels.py times layers (rotated
# weight copies, one CUDA graph), with each variant's relative error against the torch reference.
# Its variants are aqlm_sass.py's edits, which apply to 66c6b73's kernels (KERNELS_SRC, see aqlm_sass.py).
#   python3 docs/results/kernels/v14/aqlm_ab.py OUT.json   (repository root, packages on PYTHONPATH)
#   AQLM_AB="codes by tile" python3 docs/results/kernels/v14/aqlm_ab.py OUT.json   (the codes' variant instead)
import dataclasses, json, os, sys, torch
sys.path.insert(0, "benchmarks")
from gpu_kernels import Timer, map_tensors, n_copies, state_bytes
from lowbit.kernels.triton.common import DOT_CONFIGS
from lowbit.kernels.triton.random_weights import random_additive

src = open("docs/results/kernels/v14/aqlm_sass.py").read().split("for name, edits in VARIANTS.items():")[0]
g = {}
exec(compile(src, "aqlm_sass", "exec"), g)
mods = {"shipped": g["edited"]("shipped", [], "additive"),
        "PTX gathers": g["edited"]("swapped + words by PTX loads", g["SWAP"] + g["WORDS"] + g["ASMLOAD"], "additive")}
if os.environ.get("AQLM_AB") == "codes by tile":  # the second run: the code tile by the kernel's own load
    mods = {"shipped": mods["shipped"], "PTX words, codes by tile": g["edited"](
        "swapped + words by PTX, codes by tile", g["SWAP"] + g["WORDS"] + g["ASMWORDS"], "additive")}
dev = torch.device("cuda")
timer = Timer(dev, 20)
l2 = torch.cuda.get_device_properties(dev).L2_cache_size
rows = []
for m_b in ((2, 8), (1, 16)):
    for d_out, d_in in [(4096, 4096), (4096, 11008), (11008, 4096)]:
        x = torch.randn(16, d_in, device=dev).half()
        qw = random_additive(d_out, d_in, *m_b, 0, dev)
        ref = x.float() @ qw.dequantize().T.to(dev)
        for name, u in mods.items():
            st = u.prepare(qw, dev)
            states = [st] + [map_tensors(st, torch.clone) for _ in range(n_copies(state_bytes(st), l2) - 1)]
            for c in DOT_CONFIGS:
                try:
                    err = float((u.run(st, x, c).float() - ref).abs().max() / ref.abs().max())
                    us = timer([lambda s=s: u.run(s, x, c) for s in states])[0]
                except Exception as e:
                    err, us = None, None
                r = dict(format=f"aqlm {m_b[0]}x{m_b[1]}", shape=(d_out, d_in), variant=name,
                         config=dataclasses.astuple(c), us=us, rel_err=err)
                rows.append(r)
            best = min((r for r in rows if r["variant"] == name and r["shape"] == (d_out, d_in) and
                        r["format"] == f"aqlm {m_b[0]}x{m_b[1]}" and r["us"]), key=lambda r: r["us"])
            print(best, flush=True)
            del states
json.dump(rows, open(sys.argv[1], "w"), indent=1)
