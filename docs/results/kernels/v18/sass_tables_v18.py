# ruff: noqa
# Session 28, offline (sm_90, Triton 3.6 first on PYTHONPATH): the column-table GEMV's loop at the H100's 4-bit configuration
# with TMA word boxes, (32, 256, 2, 3), and the register-load loops at (32, 512, 16, 1), 4- and 2-bit: barriers, shared-memory
# stores and loads, shuffles, and the memory instructions by position. Not measured on the GPU this session.
#   python3 docs/results/kernels/v18/sass_tables_v18.py > docs/results/kernels/v18/sass_tables_v18.txt
import sys
sys.path.insert(0, "benchmarks")
from kernel_sass import compile_sass, longest_loop, opcode_counts
from lowbit.kernels.triton import column_tables as ct
for bm, kr, nw, tma in [(1, 256, 2, True), (1, 512, 16, False)]:
    for b in (4, 2):
        if tma and b != 4: continue
        const = dict(B0=b, B1=0, B2=0, B3=0, KR=kr, SPLIT=1, PARTS=1, HAS_PERM=False, HAS_OUT=False, BLOCK_M=bm, OUT_CHUNK=64,
                     ASM=True, TMA=tma, STAGES=3)
        types = {q: "*i32" for q in ("QD0", "QD1", "QD2", "QD3")}
        if tma:
            types["QD0"] = f"tensordesc<i32[{kr}, 4]>"
        s = compile_sass(ct.column_table_kernel, const, nw, 1, types)
        loop = longest_loop(s)
        c = opcode_counts(loop)
        print(b, bm, kr, nw, tma, len(loop), f"{len(loop)/(kr*32/(nw*32)):.2f}/code", {k: c.get(k,0) for k in ("BAR", "STS", "LDS", "LDSM", "LDG", "LDGSTS", "SHFL", "PRMT", "FFMA")})
        print("   ", "; ".join(f"{i} {next(t for t in l.split() if not t.startswith('@'))}" for i, l in enumerate(loop) if any(k in l for k in ("LDS","STS","BAR","LDG","UTMA","DEPBAR","BRA")) and "@!PT LDS" not in l))
