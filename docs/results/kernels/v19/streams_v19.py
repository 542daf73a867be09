# ruff: noqa
# Session 29 (v19): 400 eager ticketed launches of a 4096 x 4096 4-bit layer at batch 16, split 4, alternating between two
# streams with nothing synchronizing them, with and without common.after_last_stream. On the GPU from the repository root:
#   python3 docs/results/kernels/v19/streams_v19.py guard|noguard   (output: streams_v19.log)
import sys, torch
from lowbit.kernels.triton import common, uniform
from lowbit.kernels.triton.random_weights import random_uniform
guard = sys.argv[1] == "guard"
if not guard:
    common.after_last_stream = lambda like: None
qw = random_uniform(4096, 4096, 4, 128, seed=5, device="cuda")
st = uniform.prepare(qw, "cuda")
c = common.Config(64, 32, 4, 3, 4, tma=True, tickets=True)
x = torch.randn(16, 4096, device="cuda").half()
ref = (x.float() @ qw.dequantize().float().T)
streams = [torch.cuda.Stream(), torch.cuda.Stream()]
for s in streams:
    s.wait_stream(torch.cuda.current_stream())
ys = []
for i in range(400):
    with torch.cuda.stream(streams[i % 2]):
        ys.append(uniform.run(st, x, c))
torch.cuda.synchronize()
errs = [float((y.float() - ref).abs().max() / ref.abs().max()) for y in ys]
bad = sum(e > 4e-3 or e != e for e in errs)
print("guard" if guard else "no guard", "outputs over 4e-3 relative error (or NaN):", bad, "of", len(ys), "largest", max(errs), flush=True)
