# ruff: noqa
# The script behind gemv_parts_h100_v5_prologue.json, run on the H100 at commit f5e4519 (the activation prologue, since reverted):
#   python3 docs/results/kernels/gemv_parts_v5_prologue.py OUT.json  (from the repository root, packages on PYTHONPATH)
import sys, json, dataclasses, torch, triton, triton.language as tl
sys.path.insert(0, "benchmarks")
from gpu_kernels import Timer, map_tensors, n_copies, state_bytes
from lowbit.kernels.triton import uniform, common
from lowbit.kernels.triton.common import Config, PER, PLANES, block_m, blocks_per_iter, output, outlier_args, out_chunk, split_blocks, loads_ahead
from lowbit.kernels.triton.random_weights import random_uniform
dev = torch.device("cuda")
timer = Timer(dev, 20)
l2 = torch.cuda.get_device_properties(dev).L2_cache_size
print("triton", triton.__version__, "gdc" , hasattr(tl.extra.cuda, "gdc_wait"))

def main_only(st, x, xs, xb, c):
    m, (n, k) = x.shape[0], st.shape
    per = PER[st.bits]; planes = PLANES[st.bits]
    n_blocks = k // st.block
    gpi = blocks_per_iter(c, per, st.block, triton.cdiv(n_blocks, c.split_k), 1)
    y = output(m, n, c, x)
    grid = (triton.cdiv(n, c.block_n), 1, c.split_k)
    uniform.uniform_kernel[grid](x, xs, xb, y, st.planes[0], st.planes[-1], st.scales, st.offsets, st.scales,
        *outlier_args(None, y), m, n, k, x.stride(0), k // per, 0x4B000000, GS=st.group_size, KB=st.block, PER=per,
        W0=planes[0], W1=planes[1] if len(planes) > 1 else 0, HAS_PERM=False, HAS_OUT=False, BLOCK_M=1,
        BLOCK_N=c.block_n, GPI=gpi, SPLIT=c.split_k, SPLIT_BLOCKS=split_blocks(n_blocks, gpi, c.split_k),
        OUT_CHUNK=out_chunk(c.block_n), ASM=True, PREFETCH=loads_ahead(c, 1), num_warps=c.num_warps, num_stages=c.num_stages)
    return y

# 3-bit debug on a small shape
qw = random_uniform(40, 256, 3, 64, seed=3, device=dev)
st = uniform.prepare(qw)
x = torch.randn(1, 256, device=dev).half()
ref = x.double() @ qw.dequantize(torch.float64).T
for c in [Config(32, 16), Config(8, 128), Config(16, 64, 4, 1)]:
    y = uniform.run(st, x, c)
    print("3-bit", c, "err", float((y.double() - ref).abs().max() / ref.abs().max()))
    st0 = dataclasses.replace(st, planes=[st.planes[0], torch.zeros_like(st.planes[1])])
    q0 = dataclasses.replace(qw, codes=qw.codes & 3)
    ref0 = x.double() @ q0.dequantize(torch.float64).T
    y0 = uniform.run(st0, x, c)
    print("   low plane only err", float((y0.double() - ref0).abs().max() / ref0.abs().max()))
    xs, xb = uniform.activations(st, x)
    xh = x.float()[0]
    print("   xb err", float((xb - xh.reshape(-1, st.block).sum(1)).abs().max()))

rows = []
for d_out, d_in in [(4096, 4096), (4096, 11008)]:
    x = torch.randn(1, d_in, device=dev).half()
    for bits in (4, 2):
        st = uniform.prepare(random_uniform(d_out, d_in, bits, 128, 0, dev), dev)
        nb = state_bytes(st)
        states = [st] + [map_tensors(st, torch.clone) for _ in range(n_copies(nb, l2) - 1)]
        xs, xb = uniform.activations(st, x)
        for c in [Config(16, 128, 8, 2), Config(16, 128, 8, 1), Config(8, 128, 4, 2), Config(32, 64, 4, 3, 4), Config(64, 32, 2, 3, 8)]:
            r = dict(shape=(d_out, d_in), bits=bits, config=dataclasses.astuple(c),
                     full=timer([lambda s=s: uniform.run(s, x, c) for s in states])[0],
                     act=timer([lambda: uniform.activations(st, x)])[0],
                     main=timer([lambda s=s: main_only(s, x, xs, xb, c) for s in states])[0])
            rows.append(r); print(r, flush=True)
json.dump(rows, open(sys.argv[1], "w"), indent=1)
