# ruff: noqa
# Session 28, offline (sm_90, the ptxas of the Triton wheel; run with Triton 3.6 first on PYTHONPATH): the uniform
# TMA GEMV's loop at the H100's batch-1 configurations, 63e399c (codes minus their power of two by one FADD each;
# scales and offsets as two fp16 tiles) against this checkout (biased codes; both in one int32 word): instructions,
# those a code, and the barriers, shared-memory stores and global loads of the loop.
#   python3 docs/results/kernels/v18/sass_gemv_v18.py > docs/results/kernels/v18/sass_gemv_v18.txt
import sys
sys.path.insert(0, "benchmarks")
from kernel_sass import compile_kernel, disassemble, kernel_modules, longest_loop, opcode_counts

for ref in ("63e399c", None):
    uniform = kernel_modules(ref)["uniform"]
    for bits, bn, words, nw in ((4, 8, 128, 2), (4, 16, 128, 2), (2, 8, 128, 2), (2, 16, 128, 2), (2, 32, 128, 4)):
        per = 32 // bits
        wb, gpi = 128 // per, words * per // 128
        const = dict(GS=128, KB=128, PER=per, W0=bits, W1=0, HAS_PERM=False, HAS_OUT=False, BLOCK_M=1, BLOCK_N=bn,
                     GPI=gpi, SPLIT=1, OUT_CHUNK=1024, ASM=True, PREFETCH=False, OUT_PROGS=0, REP=1, TMA=True, STAGES=3)
        types = {"QD0": f"tensordesc<i32[{bn}, {gpi}, {wb}]>", "QD1": f"tensordesc<i32[{bn}, {gpi}, {wb}]>"}
        loop = longest_loop(disassemble(compile_kernel(uniform.uniform_kernel, const, nw, 1, types)))
        c = opcode_counts(loop)
        codes = bn * gpi * 128 / (nw * 32)
        mem = ", ".join(f"{k} {sum(v for o, v in c.items() if o == k)}" for k in ("BAR", "STS", "LDG", "LDGSTS", "LDS"))
        top = ", ".join(f"{o} {v}" for o, v in c.most_common(5))
        print(f"{ref or 'this checkout'}: {bits}-bit ({bn}, {words}, {nw}, 3) TMA: {len(loop)} instructions, "
              f"{len(loop) / codes:.2f} a code; {mem}; {top}")

# The memory instructions, barriers and branches of the 4-bit loop at (8, 128, 2, 3), by position: the loop body runs
# to the conditional branch before the reduction (the epilogue that follows it is inside the counted range).
for ref in ("63e399c", None):
    uniform = kernel_modules(ref)["uniform"]
    const = dict(GS=128, KB=128, PER=8, W0=4, W1=0, HAS_PERM=False, HAS_OUT=False, BLOCK_M=1, BLOCK_N=8, GPI=8, SPLIT=1,
                 OUT_CHUNK=1024, ASM=True, PREFETCH=False, OUT_PROGS=0, REP=1, TMA=True, STAGES=3)
    types = {"QD0": "tensordesc<i32[8, 8, 16]>", "QD1": "tensordesc<i32[8, 8, 16]>"}
    loop = longest_loop(disassemble(compile_kernel(uniform.uniform_kernel, const, 2, 1, types)))
    keys = ("LDS", "STS", "BAR", "LDG", "SYNCS", "UTMA", "DEPBAR", "BRA", "EXIT")
    print(f"{ref or 'this checkout'}, 4-bit (8, 128, 2, 3):", "; ".join(
        f"{i} {next(t for t in l.split() if not t.startswith('@'))}" for i, l in enumerate(loop)
        if any(k in l for k in keys) and "@!PT LDS" not in l))
