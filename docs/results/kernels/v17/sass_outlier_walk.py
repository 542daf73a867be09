# ruff: noqa
# Session 27, offline (sm_90, the ptxas of the Triton wheel; run with Triton 3.6 first on PYTHONPATH): where the 4-bit
# TMA GEMV with outliers issues its first TMA copy (UTMALDG), before (a53c2ac: the first chunk's activations gathered
# before the main loop) and now (gathered after it). Lists the global loads (LDG) and TMA copies before the loop.
#   python3 docs/results/kernels/v17/sass_outlier_walk.py > docs/results/kernels/v17/sass_outlier_walk_v17.txt
import re, sys
sys.path.insert(0, "benchmarks")
from kernel_sass import compile_kernel, disassemble, kernel_modules

for ref in ("a53c2ac", None):
    uniform = kernel_modules(ref)["uniform"]
    for bn, chunk in ((4, 512), (8, 256)):
        const = dict(GS=128, KB=128, PER=8, W0=4, W1=0, HAS_PERM=False, HAS_OUT=True, BLOCK_M=1, BLOCK_N=bn, GPI=8,
                     SPLIT=1, OUT_CHUNK=chunk, ASM=True, PREFETCH=False, OUT_PROGS=0, REP=1, TMA=True, STAGES=3)
        types = {"QD0": f"tensordesc<i32[{bn}, 8, 16]>", "QD1": f"tensordesc<i32[{bn}, 8, 16]>"}
        sass = disassemble(compile_kernel(uniform.uniform_kernel, const, 2, 1, types))
        lines = [l.strip() for l in sass.splitlines() if re.search(r"/\*[0-9a-f]{4}\*/", l)]
        first_tma = next(i for i, l in enumerate(lines) if "UTMALDG" in l)
        loads = [l for l in lines[:first_tma] if re.search(r"\bLDG\b|LDG\.", l)]
        print(f"## {ref or 'this checkout'}: (BLOCK_N {bn}, 128 words, 2 warps, 3 stages, TMA), chunk {chunk}")
        print(f"first UTMALDG at instruction {first_tma}; {len(loads)} global loads before it "
              f"({sum('U16' in l for l in loads)} 16-bit: entries and, before, gathered activations)")
        for l in loads:
            print("   ", re.sub(r"\s+", " ", l))
        print()
