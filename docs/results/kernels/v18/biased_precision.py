# ruff: noqa
# Session 28, CPU (Triton's interpreter): the uniform GEMV's error with the codes' powers of two kept in the sums
# (biased_code, this checkout) against the shipped subtraction per code (kt_HEAD, by ab_v11/versions.sh HEAD), on
# random 8-row layers drawn as the kernel tests draw them (random_uniform, activations N(0, 1) in fp16), at the H100's
# batch-1 configuration (8 rows, 128 words, 2 warps, 3 stages, TMA). Per layer: max |y - ref| / max |ref| (the kernel
# tests' check, < 4e-3); per row: |y - ref| / sum_k |W_hat x| (how much of the row's terms the error is).
#   TRITON_INTERPRET=1 PYTHONPATH=docs/results/kernels/ab_v11:kernels/src:... python3 docs/results/kernels/v18/biased_precision.py
import importlib, json, sys
import torch
from lowbit.kernels.triton.random_weights import random_uniform

mods = {v: importlib.import_module(f"{p}.uniform") for v, p in (("shipped", "kt_HEAD"), ("biased", "lowbit.kernels.triton"))}
cfg = {v: importlib.import_module(f"{p}.common").Config(8, 128, 2, 3, 1, True) for v, p in (("shipped", "kt_HEAD"), ("biased", "lowbit.kernels.triton"))}
out = {}
for bits in (4, 2):
    for k in (512, 2048):
        g = torch.Generator().manual_seed(bits * 10000 + k)
        res = {v: dict(layer=[], row=[]) for v in mods}
        for t in range(int(sys.argv[1]) if len(sys.argv) > 1 else 40):
            qw = random_uniform(8, k, bits, 128, seed=t + 1000 * bits + k)
            x = torch.randn(1, k, generator=g).half()
            w = qw.dequantize().double()
            ref = x.double() @ w.T
            mag = x.double().abs() @ w.abs().T
            for v, m in mods.items():
                y = m.run(m.prepare(qw, "cpu"), x, cfg[v]).double()
                res[v]["layer"].append(float((y - ref).abs().max() / ref.abs().max()))
                res[v]["row"] += ((y - ref).abs() / mag).flatten().tolist()
        for v, r in res.items():
            lay, row = torch.tensor(r["layer"]), torch.tensor(r["row"])
            s = dict(layers=len(lay), layer_median=float(lay.median()), layer_max=float(lay.max()),
                     row_median=float(row.median()), row_max=float(row.max()), over_check=int((lay > 4e-3).sum()))
            out[f"{bits}-bit K={k} {v}"] = s
            print(f"{bits}-bit K={k} {v:8s}", " ".join(f"{a}={b:.3g}" if isinstance(b, float) else f"{a}={b}" for a, b in s.items()), flush=True)
json.dump(out, open("docs/results/kernels/v18/biased_precision_v18.json", "w"), indent=1)
