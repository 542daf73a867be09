# ruff: noqa
# Session 25, offline: the uniform kernel's batch loop (tl.dot) at small tiles, where Triton 3.6 uses mma.sync (HMMA.16816)
# instead of wgmma (BLOCK_N < 64 rows a warp group, or 1-2 warps), compiled for sm_90 with the Triton on PYTHONPATH
# (for the H100's: the triton 3.6.0 wheel unpacked first), longest loop of benchmarks/kernel_sass.py. From the repository
# root, for the shipped kernels and then with gathered_words.patch applied (git apply):
#   PYTHONPATH=/tmp/t36:kernels/src:... python docs/results/kernels/v15/sass_small_tiles.py
import os, sys
sys.path.insert(0, "benchmarks")
import triton
from kernel_sass import compile_sass, longest_loop, opcode_counts
from lowbit.kernels.triton import uniform as u
print(f"triton {triton.__version__}\n\n| bits | block_n | warps | loop instructions | per code | SEL | SHFL | STS | LDS | BAR | HMMA | HGMMA | LDG | LOP3 |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for bits, bn, nw in [(4, 16, 1), (4, 32, 1), (4, 64, 1), (4, 32, 2), (4, 64, 2), (4, 64, 4), (2, 32, 1), (2, 64, 2)]:
    per = 32 // bits
    const = dict(GS=128, KB=128, PER=per, W0=bits, W1=0, HAS_PERM=False, HAS_OUT=False, BLOCK_M=16, BLOCK_N=bn,
                 GPI=1, SPLIT=8, OUT_CHUNK=32, ASM=True, PREFETCH=False, OUT_PROGS=0, REP=1)
    loop = longest_loop(compile_sass(u.uniform_kernel, const, nw, 1))
    c = opcode_counts(loop)
    codes = bn * 128 / (32 * nw)
    print(f"| {bits} | {bn} | {nw} | {len(loop)} | {len(loop) / codes:.2f} | " + " | ".join(str(c[k]) for k in ("SEL", "SHFL", "STS", "LDS", "BAR", "HMMA", "HGMMA", "LDG", "LOP3")) + " |")
