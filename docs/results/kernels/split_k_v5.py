# ruff: noqa
# The script behind split_k_h100_v5.json, run on the H100 at commit e5665fb (from the repository root, packages on PYTHONPATH):
#   python3 docs/results/kernels/split_k_v5.py OUT.json
# Split K's costs on the H100: the uniform GEMV at split_k 1/2/4 as run (zero-fill + atomics), the same
# kernels into a y that is never re-zeroed (atomics only), and the zero-fill alone.
import sys, json, dataclasses, torch, triton
sys.path.insert(0, "benchmarks")
from gpu_kernels import Timer, map_tensors, n_copies, state_bytes
from lowbit.kernels.triton import uniform
from lowbit.kernels.triton.common import Config, PER, PLANES, blocks_per_iter, outlier_args, out_chunk, split_blocks, loads_ahead
from lowbit.kernels.triton.random_weights import random_uniform
dev = torch.device("cuda"); timer = Timer(dev, 20)
l2 = torch.cuda.get_device_properties(dev).L2_cache_size

def launch_into(st, x, c, y):
    m, (n, k) = x.shape[0], st.shape
    per = PER[st.bits]; planes = PLANES[st.bits]; n_blocks = k // st.block
    gpi = blocks_per_iter(c, per, st.block, triton.cdiv(n_blocks, c.split_k), 1)
    uniform.uniform_kernel[(triton.cdiv(n, c.block_n), 1, c.split_k)](
        x, y, st.planes[0], st.planes[-1], st.scales, st.offsets, st.scales, *outlier_args(None, y), m, n, k,
        x.stride(0), k // per, 0x4B000000, GS=st.group_size, KB=st.block, PER=per, W0=planes[0],
        W1=planes[1] if len(planes) > 1 else 0, HAS_PERM=False, HAS_OUT=False, BLOCK_M=1, BLOCK_N=c.block_n,
        GPI=gpi, SPLIT=c.split_k, SPLIT_BLOCKS=split_blocks(n_blocks, gpi, c.split_k), OUT_CHUNK=out_chunk(c.block_n),
        ASM=True, PREFETCH=loads_ahead(c, 1), num_warps=c.num_warps, num_stages=c.num_stages)
    return y

rows = []
for d_out, d_in in [(4096, 4096), (4096, 11008)]:
    x = torch.randn(1, d_in, device=dev).half()
    zero_us = timer([lambda: torch.zeros(1, d_out, dtype=torch.float16, device=dev)])[0]
    print("zero-fill alone", d_out, round(zero_us, 2), flush=True)
    for bits in (4, 2):
        st = uniform.prepare(random_uniform(d_out, d_in, bits, 128, 0, dev), dev)
        nb = state_bytes(st)
        states = [st] + [map_tensors(st, torch.clone) for _ in range(n_copies(nb, l2) - 1)]
        y = torch.zeros(1, d_out, dtype=torch.float16, device=dev)
        for c in [Config(16, 128, 8, 1), Config(16, 128, 8, 1, 2), Config(16, 128, 8, 1, 4), Config(8, 128, 8, 1, 2),
                  Config(32, 128, 8, 1, 2), Config(32, 128, 8, 1, 4), Config(32, 64, 8, 1, 4), Config(16, 64, 8, 1, 4)]:
            r = dict(shape=(d_out, d_in), bits=bits, config=dataclasses.astuple(c), zero_us=zero_us,
                     run_us=timer([lambda s=s: uniform.run(s, x, c) for s in states])[0],
                     kernel_us=timer([lambda s=s: launch_into(s, x, c, y) for s in states])[0])
            rows.append(r); print(r, flush=True)
json.dump(rows, open(sys.argv[1], "w"), indent=1)
