# ruff: noqa
# Where the uniform GEMV's batch-1 time goes (session 17, v6's kernel): the kernel timed as shipped and with
# each kind of load inside its loop replaced by values computed from the indices (no memory access), the
# way benchmarks/gpu_kernels.py times layers (rotated weight copies, one CUDA graph). Variants are textual
# edits of this checkout's kernels/src/lowbit/kernels/triton/{common,uniform}.py copied into a temporary
# package; each edit is asserted to apply.
#   python3 docs/results/kernels/gemv_parts_v7.py OUT.json   (repository root, packages on PYTHONPATH)
import dataclasses, importlib, json, os, sys, tempfile, torch
sys.path.insert(0, "benchmarks")
from gpu_kernels import Timer, map_tensors, n_copies, state_bytes
from lowbit.kernels.triton.common import Config
from lowbit.kernels.triton.random_weights import random_uniform

SRC = "kernels/src/lowbit/kernels/triton"
X_LOAD = "x = tl.load(X + ki)[None, :, :].to(tl.float32)"
S_LOAD = "tl.load(S + sp, mask=ok[None, :], other=0.0), tl.load(OFF + sp, mask=ok[None, :], other=0.0))"
W_LOAD = "w0 = load_words(Q0, rows, row_words, wcol, ok)"
EDITS = {
    "x": (X_LOAD, "x = (ki.to(tl.float32) * 0.001)[None, :, :]"),
    "scales": (S_LOAD, "(sp * 0 + 1).to(tl.float16), (sp * 0).to(tl.float16))"),
    "words": (W_LOAD, "w0 = rows[:, None, None] * 40503 + wcol[None, :, :] * 2654435 + b0"),
}
VARIANTS = {"shipped": (), "no x loads": ("x",), "no scale loads": ("scales",), "words only loaded": ("x", "scales"),
            "no word loads": ("words",), "no loads": ("x", "scales", "words")}


def variant(name: str, edits: tuple[str, ...]):
    root = tempfile.mkdtemp(prefix="gemv_parts_")
    pkg = f"gemv_parts_{len(os.listdir(tempfile.gettempdir()))}_{abs(hash(name))}"
    os.makedirs(os.path.join(root, pkg))
    open(os.path.join(root, pkg, "__init__.py"), "w").close()
    for mod in ("common", "uniform"):
        text = open(f"{SRC}/{mod}.py").read()
        if mod == "uniform":
            for e in edits:
                old, new = EDITS[e]
                assert text.count(old) == 1, (e, text.count(old))
                text = text.replace(old, new)
        open(os.path.join(root, pkg, f"{mod}.py"), "w").write(text)
    sys.path.insert(0, root)
    return importlib.import_module(f"{pkg}.uniform")


dev = torch.device("cuda")
timer = Timer(dev, 20)
l2 = torch.cuda.get_device_properties(dev).L2_cache_size
mods = {name: variant(name, e) for name, e in VARIANTS.items()}
rows = []
for d_out, d_in in [(4096, 4096), (4096, 11008)]:
    x = torch.randn(1, d_in, device=dev).half()
    for bits in (4, 2):
        qw = random_uniform(d_out, d_in, bits, 128, 0, dev)
        for c in [Config(8, 128, 8, 2), Config(16, 128, 16, 1), Config(16, 128, 8, 2)]:
            r = dict(shape=(d_out, d_in), bits=bits, config=dataclasses.astuple(c))
            for name, u in mods.items():
                st = u.prepare(qw, dev)
                states = [st] + [map_tensors(st, torch.clone) for _ in range(n_copies(state_bytes(st), l2) - 1)]
                r[name] = timer([lambda s=s: u.run(s, x, c) for s in states])[0]
            rows.append(r)
            print(r, flush=True)
json.dump(rows, open(sys.argv[1], "w"), indent=1)
