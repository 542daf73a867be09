# ruff: noqa
# Session 26: the column-table kernel's sm_90 SASS (Triton 3.6 first on PYTHONPATH) with and without TMA word boxes: a 4-bit
# GEMV at (32, 256, 8) and a batch of 16 at (32, 64, 4); prints batch rows, columns, warps, tma, loop length, per code, UTMALDG count,
# top opcodes. From the repository root: python3 docs/results/kernels/v16/sass_tma_tables.py
import sys
sys.path.insert(0, "benchmarks")
from kernel_sass import compile_sass, longest_loop, opcode_counts
from lowbit.kernels.triton import column_tables as ct
for bm, kr, nw, tma in [(1, 256, 8, True), (1, 256, 8, False), (16, 64, 4, True), (16, 64, 4, False)]:
    const = dict(B0=4, B1=0, B2=0, B3=0, KR=kr, SPLIT=1, PARTS=1, HAS_PERM=False, HAS_OUT=False, BLOCK_M=bm, OUT_CHUNK=64,
                 ASM=True, TMA=tma, STAGES=3)
    types = {q: "*i32" for q in ("QD0", "QD1", "QD2", "QD3")}
    if tma:
        types["QD0"] = f"tensordesc<i32[{kr}, 4]>"
    s = compile_sass(ct.column_table_kernel, const, nw, 1, types)
    loop = longest_loop(s)
    codes = kr * 32 * bm / (nw * 32) if bm == 1 else kr * 32 / (nw * 32)
    print(bm, kr, nw, tma, len(loop), f"{len(loop)/codes:.2f}/code", s.count("UTMALDG"), dict(opcode_counts(loop).most_common(8)))
