# ruff: noqa
# Session 25, offline: does Triton 3.6 pipeline the uniform GEMV's loads (cp.async, LDGSTS)? The kernel's num_stages
# alone (the shipped loop, `range`) leaves them alone; with gemv_cp_async.patch applied (git apply), whose loop is
# `tl.range(.., num_stages=PIPE)`, it copies words and scales through shared memory. sm_90, longest loop of
# benchmarks/kernel_sass.py. From the repository root:
#   PYTHONPATH=/tmp/t36:kernels/src:... python docs/results/kernels/v15/sass_gemv_stages.py
import sys
sys.path.insert(0, "benchmarks")
import triton
from kernel_sass import compile_sass, longest_loop, opcode_counts
from lowbit.kernels.triton import uniform as u
pipe = "PIPE" in u.uniform_kernel.arg_names
print(f"triton {triton.__version__}, loop with tl.range(num_stages=PIPE): {pipe}\n")
print("| bits | (block_n, GPI, warps) | num_stages | PIPE | loop instructions | LDG | LDGSTS | LDS | BAR |\n|---|---|---|---|---|---|---|---|---|")
for bn, gpi, nw, ns in [(16, 8, 8, 1), (16, 8, 8, 3), (8, 8, 8, 3)]:
    const = dict(GS=128, KB=128, PER=8, W0=4, W1=0, HAS_PERM=False, HAS_OUT=False, BLOCK_M=1, BLOCK_N=bn,
                 GPI=gpi, SPLIT=1, OUT_CHUNK=32, ASM=True, PREFETCH=False, OUT_PROGS=0, REP=1)
    if pipe:
        const["PIPE"] = ns
    loop = longest_loop(compile_sass(u.uniform_kernel, const, nw, ns))
    c = opcode_counts(loop)
    print(f"| 4 | {(bn, gpi, nw)} | {ns} | {const.get('PIPE', '-')} | {len(loop)} | {c['LDG']} | {c['LDGSTS']} | {c['LDS']} | {c['BAR']} |")
