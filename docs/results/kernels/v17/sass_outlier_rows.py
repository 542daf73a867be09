# ruff: noqa
# Session 27, offline (sm_90, the ptxas of the Triton wheel; run with Triton 3.6 first on PYTHONPATH): instructions of
# the whole 4-bit TMA GEMV kernel with outliers, the masked sum (49d449b) against the prefix sums (this checkout).
#   python3 docs/results/kernels/v17/sass_outlier_rows.py > docs/results/kernels/v17/sass_outlier_rows_v17.txt
import re, sys
sys.path.insert(0, "benchmarks")
from kernel_sass import compile_kernel, disassemble, kernel_modules

for ref in ("49d449b", None):
    uniform = kernel_modules(ref)["uniform"]
    for bn, words, nw, chunk in ((8, 128, 2, 1024), (8, 256, 4, 1024), (8, 128, 2, 256)):
        gpi = words * 8 // 128
        const = dict(GS=128, KB=128, PER=8, W0=4, W1=0, HAS_PERM=False, HAS_OUT=True, BLOCK_M=1, BLOCK_N=bn, GPI=gpi,
                     SPLIT=1, OUT_CHUNK=chunk, ASM=True, PREFETCH=False, OUT_PROGS=0, REP=1, TMA=True, STAGES=3)
        types = {"QD0": f"tensordesc<i32[{bn}, {gpi}, 16]>", "QD1": f"tensordesc<i32[{bn}, {gpi}, 16]>"}
        sass = disassemble(compile_kernel(uniform.uniform_kernel, const, nw, 1, types))
        n = sum(1 for l in sass.splitlines() if re.search(r"/\*[0-9a-f]{4}\*/", l))
        print(f"{ref or 'this checkout'}: ({bn}, {words}, {nw}, 3) TMA, chunk {chunk}: {n} instructions")
