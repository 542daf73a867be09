# ruff: noqa
# Session 26: the column-table kernel's sm_90 SASS (Triton 3.6 first on PYTHONPATH) with and without TMA word boxes: a 4-bit
# GEMV at (32, 256, 8) and a batch of 16 at (32, 64, 4); prints batch rows, columns, warps, tma, loop length, per code, UTMALDG count,
# top opcodes. From the repository root: python3 docs/results/kernels/v16/sass_tma_tables.py
import sys, subprocess, tempfile, os
sys.path.insert(0, "benchmarks")
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from kernel_sass import longest_loop, opcode_counts, POINTERS, POINTER_TYPES, DIV16
from lowbit.kernels.triton import column_tables as ct
fn = ct.column_table_kernel
for bm, kr, nw, tma in [(1, 256, 8, True), (1, 256, 8, False), (16, 64, 4, True), (16, 64, 4, False)]:
    const = dict(B0=4, B1=0, B2=0, B3=0, KR=kr, SPLIT=1, PARTS=1, HAS_PERM=False, HAS_OUT=False, BLOCK_M=bm, OUT_CHUNK=64,
                 ASM=True, TMA=tma, STAGES=3)
    names = fn.arg_names
    sig = {n: "constexpr" if n in const else POINTER_TYPES.get(n, "*fp16") if n in POINTERS else "i32" for n in names}
    for q in ("QD0", "QD1", "QD2", "QD3"):
        sig[q] = "*i32"
    if tma:
        sig["QD0"] = f"tensordesc<i32[{kr}, 4]>"
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in names if n in POINTERS or n in DIV16}
    src = ASTSource(fn=fn, signature=sig, constexprs={(names.index(k),): v for k, v in const.items()}, attrs=attrs)
    ck = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": nw, "num_stages": 1})
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(ck.asm["cubin"])
    nvdisasm = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "nvdisasm")
    s = subprocess.run([nvdisasm, "-c", f.name], capture_output=True, text=True, check=True).stdout
    loop = longest_loop(s)
    codes = kr * 32 * bm / (nw * 32) if bm == 1 else kr * 32 / (nw * 32)
    print(bm, kr, nw, tma, len(loop), f"{len(loop)/codes:.2f}/code", s.count("UTMALDG"), dict(opcode_counts(loop).most_common(8)))
