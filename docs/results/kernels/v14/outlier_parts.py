# ruff: noqa
# Where the batch-16 outlier time goes (session 24, v14's kernel): the uniform 4-bit layer with 0.5% outliers
# timed as shipped and with parts of its outlier programs taken out, at its per-GPU configuration, the way
# benchmarks/gpu_kernels.py times layers (rotated weight copies, one CUDA graph). Variants are textual edits of
# this checkout's kernels (edited_kernels.py).
#   python3 docs/results/kernels/v14/outlier_parts.py OUT.json   (repository root, packages on PYTHONPATH)
#   PARTS=chunks (or small) python3 docs/results/kernels/v14/outlier_parts.py OUT.json   (larger or smaller chunks)
import dataclasses, json, os, sys, torch
sys.path.insert(0, "benchmarks")
sys.path.insert(0, "docs/results/kernels/v14")
from edited_kernels import edited
from gpu_kernels import Timer, map_tensors, n_copies, state_bytes
from lowbit.kernels.triton import common as live_common, uniform as live_uniform
from lowbit.kernels.triton.random_weights import random_uniform

GATHER = "xv = tl.load(X + offs_m[:, None] * stride_xm + col[None, :], mask=m_mask[:, None] & ok[None, :], other=0.0)"
STORE = "    store_y(Y, acc, offs_m, m_mask, offs_n, N, SPLIT + OUT_PROGS)"
EDITS = {
    # activations computed from the indices instead of gathered
    "gather": ("common", GATHER, "xv = (offs_m[:, None] * 0.001 + col[None, :] * 0.0001).to(X.dtype.element_ty)"),
    # the outlier programs' adds into y masked off (their work still done: the mask is not a constant)
    "adds": ("uniform", STORE, "    store_y(Y, acc, offs_m, m_mask & (pid_k < SPLIT), offs_n, N, SPLIT + OUT_PROGS)"),
    # each outlier program's chunk starts past the tile's entries: no entry or activation loaded
    "chunks": ("uniform", "pid_k - SPLIT, BLOCK_N, OUT_CHUNK, OUT_PROGS)",
               "pid_k - SPLIT + (1 << 20), BLOCK_N, OUT_CHUNK, OUT_PROGS)"),
    # chunks of up to 2x or 4x as many entries (half or a quarter of the outlier programs)
    "cap2": ("common", "cap = min(1024, max(64, 8192 // block_n))", "cap = min(1024, max(64, 16384 // block_n))"),
    "cap4": ("common", "cap = min(1024, max(64, 8192 // block_n))", "cap = min(1024, max(64, 32768 // block_n))"),
    # chunks of up to half or a quarter as many entries (2x or 4x the outlier programs)
    "half": ("common", "cap = min(1024, max(64, 8192 // block_n))", "cap = min(1024, max(16, 4096 // block_n))"),
    "quarter": ("common", "cap = min(1024, max(64, 8192 // block_n))", "cap = min(1024, max(16, 2048 // block_n))"),
}
VARIANTS = {"shipped": (), "no x gathers": ("gather",), "no adds": ("adds",),
            "outlier programs idle": ("adds", "chunks")}
if os.environ.get("PARTS") == "chunks":  # the second run: larger chunks
    VARIANTS = {"shipped": (), "chunks of 2x": ("cap2",), "chunks of 4x": ("cap4",)}
if os.environ.get("PARTS") == "small":  # the third run: smaller chunks
    VARIANTS = {"shipped": (), "chunks of 1/2": ("half",), "chunks of 1/4": ("quarter",)}


dev = torch.device("cuda")
gpu = torch.cuda.get_device_name(dev)
timer = Timer(dev, 20)
l2 = torch.cuda.get_device_properties(dev).L2_cache_size
mods = {name: edited(name, [EDITS[x] for x in e], "uniform") for name, e in VARIANTS.items()}
rows = []
for d_out, d_in in [(4096, 4096), (4096, 11008), (11008, 4096)]:
    x = torch.randn(16, d_in, device=dev).half()
    qw = random_uniform(d_out, d_in, 4, 128, 0, dev, outlier_frac=0.005)
    st0 = live_uniform.prepare(qw, dev)
    plain0 = live_uniform.prepare(random_uniform(d_out, d_in, 4, 128, 0, dev), dev)
    configs = []
    for s0 in (st0, plain0):  # the per-GPU configuration of the layer with outliers, then without
        live_uniform.run(s0, x)
        key, _ = live_uniform.tuning(s0, live_common.as_activations(x))
        configs.append(live_common._BEST[live_common.key_text((*key, gpu))])
    for c in dict.fromkeys(configs):
        r = dict(shape=(d_out, d_in), config=dataclasses.astuple(c))
        for name, u in mods.items():
            st = u.prepare(qw, dev)
            states = [st] + [map_tensors(st, torch.clone) for _ in range(n_copies(state_bytes(st), l2) - 1)]
            r[name] = timer([lambda s=s: u.run(s, x, c) for s in states])[0]
            r[name + " programs"] = u.outlier_programs(st, c, 16)
            del states
        u = mods["shipped"]
        plain = u.prepare(random_uniform(d_out, d_in, 4, 128, 0, dev), dev)
        states = [plain] + [map_tensors(plain, torch.clone) for _ in range(n_copies(state_bytes(plain), l2) - 1)]
        r["no outliers, same config"] = timer([lambda s=s: u.run(s, x, c) for s in states])[0]
        del states
        rows.append(r)
        print(r, flush=True)
json.dump(rows, open(sys.argv[1], "w"), indent=1)
