# ruff: noqa
# Session 28's final read, offline (sm_90, Triton 3.6 first on PYTHONPATH): the 3-bit GEMV (the only user of code_value)
# compiled before (24c9227) and after code_value lost its unused second word and branch; a hash of each SASS.
#   python3 docs/results/kernels/v18/sass_code_value_v18.py > docs/results/kernels/v18/sass_code_value_v18.txt
import hashlib, re, sys
sys.path.insert(0, "benchmarks")
from kernel_sass import compile_kernel, disassemble, kernel_modules

for ref in ("24c9227", None):
    uniform = kernel_modules(ref)["uniform"]
    for bn, words, nw, tma, ns in ((16, 128, 4, True, 3), (8, 128, 4, False, 2), (16, 128, 8, False, 1)):
        gpi = words * 16 // 128
        const = dict(GS=128, KB=128, PER=16, W0=2, W1=1, HAS_PERM=False, HAS_OUT=False, BLOCK_M=1, BLOCK_N=bn, GPI=gpi,
                     SPLIT=1, OUT_CHUNK=1024, ASM=True, PREFETCH=ns == 2, OUT_PROGS=0, REP=1, TMA=tma, STAGES=ns)
        types = {"QD0": f"tensordesc<i32[{bn}, {gpi}, 8]>", "QD1": f"tensordesc<i16[{bn}, {gpi}, 8]>"} if tma else {}
        s = disassemble(compile_kernel(uniform.uniform_kernel, const, nw, 1, types))
        s = "\n".join(l for l in s.splitlines() if re.search(r"/\*[0-9a-f]{4}\*/", l))
        print(f"{ref or 'this checkout'}: 3-bit ({bn}, {words}, {nw}, {ns}) tma={tma}: {len(s.splitlines())} instructions, "
              f"sha1 {hashlib.sha1(s.encode()).hexdigest()[:12]}")
