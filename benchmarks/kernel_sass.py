"""Instructions per code in the compiled GEMV loops (and the column tables' batch loops), without a GPU:
the Triton kernels compiled for sm_90 (H100) with the ``ptxas`` and ``nvdisasm`` shipped in the Triton
wheel, the longest loop of the SASS counted and divided by the codes one thread handles per iteration,

    codes per thread = BLOCK_N * BLOCK_K / (32 * num_warps),

so kernel versions can be compared where no GPU is at hand (the H100 times are in docs/results.md).

    python benchmarks/kernel_sass.py                    # the kernels in this checkout
    python benchmarks/kernel_sass.py --ref 063b693      # the kernels of a commit (session 12's v2)
    python benchmarks/kernel_sass.py --atomics          # the atomic adds of split K (CAS loops or REDG)

The kernels of ``--ref`` are read with ``git show`` into a temporary package, so their own relative
imports work. Pointer arguments and integer arguments the kernels expect to be multiples of 16
(``K``, ``N``, ``stride_xm``, ``row_words``, ``row_words1``, ``n_groups``, ``s_stride``, ``MAGIC``) are specialized
as Triton does at run time for the 4096-wide benchmark layers (``N`` and ``row_words1`` since session 16, when the table
kernel was added; the JSON of earlier sessions compiled without them). A loop unrolled by two (the uniform
GEMV's two-buffer prefetch) counts two iterations' codes.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from types import ModuleType

POINTERS = {"X", "Y", "Q0", "Q1", "S", "OFF", "PERM", "PTR", "OROW", "OCOL", "OVAL", "C", "CB", "T", "Q", "QH",
            "TT", "LUT"}
DIV16 = {"K", "N", "stride_xm", "row_words", "row_words1", "n_groups", "s_stride", "MAGIC", "stride_cn", "stride_cj"}
POINTER_TYPES = {"Q": "*i32", "QH": "*i16", "TT": "*i32", "T": "*i32", "Q0": "*i32", "Q1": "*i32",
                 "C": "*i16", "PTR": "*i32", "OROW": "*i16", "OCOL": "*i16", "PERM": "*i32", "LUT": "*fp32"}


KERNELS = ("common", "uniform", "additive", "table", "column_tables")  # column_tables: session 18 on


def kernel_modules(ref: str | None) -> dict[str, ModuleType]:
    """The kernel modules (:data:`KERNELS`) of this checkout, or of commit ``ref`` (copied into a temporary
    package)."""
    if ref is None:  # (table: the binary-code kernel until session 23)
        return {name: importlib.import_module(f"lowbit.kernels.triton.{name}") for name in KERNELS
                if importlib.util.find_spec(f"lowbit.kernels.triton.{name}") is not None}
    root = tempfile.mkdtemp(prefix="lowbit_ref_")
    pkg = os.path.join(root, "lowbit_ref_kernels")
    os.makedirs(pkg)
    open(os.path.join(pkg, "__init__.py"), "w").close()
    names = []
    for name in KERNELS:
        got = subprocess.run(["git", "show", f"{ref}:kernels/src/lowbit/kernels/triton/{name}.py"],
                             capture_output=True, text=True)
        if got.returncode == 0:  # a module the commit has
            with open(os.path.join(pkg, f"{name}.py"), "w") as f:
                f.write(got.stdout)
            names.append(name)
    sys.path.insert(0, root)
    return {name: importlib.import_module(f"lowbit_ref_kernels.{name}") for name in names}


def compile_kernel(fn, constexprs: dict, num_warps: int, num_stages: int, types: dict | None = None):
    """``fn`` compiled for sm_90 with ``constexprs`` (only those ``fn`` takes); its ``asm`` holds the
    TTGIR, PTX and cubin. ``types``: argument types that replace the defaults (e.g. tensor descriptors,
    ``"tensordesc<i32[8, 4, 16]>"``)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = fn.arg_names
    constexprs = {"TMA": False, "STAGES": 1, "TICKETS": False, **constexprs}  # register word loads, no tickets
    const = {k: v for k, v in constexprs.items() if k in names}
    sig = {n: "constexpr" if n in const else POINTER_TYPES.get(n, "*fp16") if n in POINTERS else "i32" for n in names}
    if "s_stride" in names:  # the uniform kernel's packed scales and offsets (int32 words, since v18)
        sig["S"] = "*i32"
    sig.update(types or {})
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in names if n in POINTERS or n in DIV16}
    src = ASTSource(fn=fn, signature=sig, constexprs={(names.index(k),): v for k, v in const.items()}, attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps,
                                                                          "num_stages": num_stages})


def compile_sass(fn, constexprs: dict, num_warps: int, num_stages: int, types: dict | None = None) -> str:
    """SASS of ``fn`` for sm_90 with ``constexprs`` (:func:`compile_kernel`)."""
    return disassemble(compile_kernel(fn, constexprs, num_warps, num_stages, types))


def disassemble(ck) -> str:
    """The SASS of a compiled kernel's cubin (``nvdisasm`` from the Triton wheel)."""
    import triton

    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(ck.asm["cubin"])
    nvdisasm = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "nvdisasm")
    return subprocess.run([nvdisasm, "-c", f.name], capture_output=True, text=True, check=True).stdout


def longest_loop(sass: str) -> list[str]:
    """The instructions between the target of the longest backward branch and the branch."""
    labels, seq = {}, []
    for line in sass.splitlines():
        if m := re.match(r"(\.L_x_\d+):", line):
            labels[m.group(1)] = len(seq)
        elif m := re.match(r"\s+/\*[0-9a-f]+\*/\s+(.*?);", line):
            seq.append(m.group(1))
    best: list[str] = []
    for i, ins in enumerate(seq):
        m = re.search(r"BRA.*?(\.L_x_\d+)", ins)
        if m and labels.get(m.group(1), i) < i and i + 1 - labels[m.group(1)] > len(best):
            best = seq[labels[m.group(1)]:i + 1]
    return best


def opcode_counts(loop: list[str]) -> Counter:
    return Counter(re.sub(r"^@!?U?P\w+\s+", "", x).split()[0].split(".")[0] for x in loop)


def column_table_rows(column_tables: ModuleType) -> list[tuple]:
    """The column-table kernel (session 18 on): GEMVs of one width (4 and 2 bits) at the H100's chosen
    configurations, the mixed 2/3/4-bit kernel (input indices, outliers; the longest of its three loops),
    and batches of 16 (``tl.dot``, split K by 4). ``PARTS`` (segments x split, session 19) is passed where
    the kernel takes it."""
    rows = []
    bt = column_tables.BT
    cases = [(f"{b}-bit", dict(B0=b, B1=0, B2=0, B3=0, HAS_PERM=False, HAS_OUT=False), 1, 1, kr, nw)
             for b in (4, 2) for kr, nw in [(512, 16), (256, 8), (256, 4)]]
    cases += [("mixed 2/3/4", dict(B0=2, B1=3, B2=4, B3=0, HAS_PERM=True, HAS_OUT=True), 1, 3, kr, nw)
              for kr, nw in [(512, 16), (256, 8), (128, 4)]]
    cases += [(f"{b}-bit batch 16", dict(B0=b, B1=0, B2=0, B3=0, HAS_PERM=False, HAS_OUT=False), 16, 1, 64, 4)
              for b in (4, 2)]
    for fmt, widths, bm, segs, kr, nw in cases:
        split = 4 if bm > 1 else 1
        const = dict(widths, KR=kr, SPLIT=split, PARTS=segs * split, BLOCK_M=bm, OUT_CHUNK=32, ASM=True)
        sass = compile_sass(column_tables.column_table_kernel, const, nw, 1)
        spills = len(re.findall(r"\b(?:LDL|STL)\b", sass))
        rows.append(("column tables" + (f" ({spills} spill loads/stores)" if spills else ""), fmt,
                     (bt, kr, nw, 1), bt * kr / (32 * nw), longest_loop(sass)))
    return rows


def atomic_rows(mods: dict[str, ModuleType]) -> list[tuple[str, str, list[str]]]:
    """The atomic instructions (``ATOMG``, ``REDG``) with which the kernels add their partials into ``y``
    (split K, mixed-width segments): GEMVs of 4-32 rows a tile and batches of 16, where the kernels have
    them. A compare-and-swap (``ATOMG.E.CAS``) is an fp16 add emulated one element at a time. With tickets
    (``Config.tickets``, since v19) the uniform cases again, with their fences (``MEMBAR``) and
    acquiring loads (``LDG.E.STRONG.GPU``: the wait for the first program's mark)."""
    u, ct, ad = mods["uniform"], mods.get("column_tables"), mods["additive"]
    cases = []
    for bm, bn, nw in ((1, 8, 8), (1, 32, 4), (16, 128, 4)):
        const = dict(GS=128, KB=128, PER=8, W0=4, W1=0, HAS_PERM=False, HAS_OUT=False, BLOCK_M=bm, BLOCK_N=bn,
                     GPI=4 if bm == 1 else 2, SPLIT=2, OUT_CHUNK=32, ASM=True, PREFETCH=bm == 1, OUT_PROGS=0, REP=1)
        cases.append(("uniform 4-bit", f"batch {bm}, {bn} rows, split 2", u.uniform_kernel, const, nw, 2))
        if "TICKETS" in u.uniform_kernel.arg_names:
            cases.append(("uniform 4-bit", f"batch {bm}, {bn} rows, split 2, tickets", u.uniform_kernel,
                          {**const, "TICKETS": True}, nw, 2))
    if ct is not None and "PARTS" in ct.column_table_kernel.arg_names:
        for bm, kr, nw, widths in ((1, 256, 8, (4, 0, 0)), (1, 128, 4, (2, 3, 4)), (16, 64, 4, (4, 0, 0))):
            const = dict(B0=widths[0], B1=widths[1], B2=widths[2], B3=0, HAS_PERM=False, HAS_OUT=False, KR=kr,
                         SPLIT=2, PARTS=2 * sum(w > 0 for w in widths), BLOCK_M=bm, OUT_CHUNK=32, ASM=True)
            cases.append(("column tables", f"widths {widths}, batch {bm}, split 2", ct.column_table_kernel, const,
                          nw, 1))
    if "USE_LUT" in ad.additive_kernel.arg_names:
        for bm, bn, bj, nw in ((1, 8, 128, 4), (16, 64, 16, 4)):
            const = dict(NCB=1, B=16, USE_LUT=False, HAS_OUT=False, BLOCK_M=bm, BLOCK_N=bn, BLOCK_J=bj, SPLIT=8,
                         OUT_CHUNK=32, PREFETCH=bm == 1, ASM=True, PDL=True, stride_cj=1)
            cases.append(("additive 1x16", f"batch {bm}, {bn} rows, split 8", ad.additive_kernel, const, nw, 1))
    rows = []
    for kind, case, fn, const, nw, ns in cases:
        sass = compile_sass(fn, const, nw, ns)
        ops = [m.group(1) for m in re.finditer(r"\b((?:ATOMG|REDG|MEMBAR)\.[A-Za-z0-9.]+|LDG\.E\.STRONG\.GPU)", sass)]
        rows.append((kind, case, ops))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", help="a git commit whose kernels to compile instead of this checkout's")
    p.add_argument("--json", help="write the rows here")
    p.add_argument("--atomics", action="store_true", help="list the atomic instructions that add partials instead")
    a = p.parse_args()
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    mods = kernel_modules(a.ref)
    if a.atomics:
        print(f"kernels: {a.ref or 'this checkout'}\n\n| kernel | case | atomic instructions |\n|---|---|---|")
        for kind, case, ops in atomic_rows(mods):
            print(f"| {kind} | {case} | {', '.join(f'{k} x{v}' for k, v in Counter(ops).items())} |")
        return
    uniform, additive, table = mods["uniform"], mods["additive"], mods.get("table")
    rows = []
    # a uniform GEMV that prefetches into two buffers (v5 on) has its loop unrolled by two: two iterations' codes
    unrolled = "2 * GPI" in getattr(uniform.gemv_loop, "src", "")
    # (block_n, words per row and iteration, warps, stages): the H100's chosen GEMV configurations, then
    # two with several rows per thread (an activation loaded and scaled once for all of them)
    for bits in (4, 2):
        per = {4: 8, 2: 16}[bits]
        for bn, words, nw, ns in [(16, 128, 8, 2), (8, 128, 4, 2), (16, 64, 4, 3), (4, 128, 2, 3), (32, 64, 4, 3),
                                  (64, 32, 2, 3)]:
            gpi = words * per // 128
            const = dict(GS=128, KB=128, PER=per, W0=bits, W1=0, HAS_PERM=False, HAS_OUT=False, BLOCK_M=1,
                         BLOCK_N=bn, GPI=gpi, SPLIT=1, OUT_CHUNK=32, ASM=True, PREFETCH=ns > 1, OUT_PROGS=0, REP=1)
            codes = bn * gpi * 128 / (32 * nw) * (2 if unrolled and ns > 1 else 1)
            rows.append(("uniform", f"{bits}-bit g128", (bn, words, nw, ns), codes,
                         longest_loop(compile_sass(uniform.uniform_kernel, const, nw, ns))))
        # the tensor-core path (a batch of one padded to 16 rows), where this checkout has one
        if "ASM" in uniform.uniform_kernel.arg_names:
            for bn, words, nw, ns in [(64, 32, 4, 3), (128, 32, 8, 3), (64, 64, 4, 3), (32, 32, 4, 3)]:
                gpi = words * per // 128
                const = dict(GS=128, KB=128, PER=per, W0=bits, W1=0, HAS_PERM=False, HAS_OUT=False, BLOCK_M=16,
                             BLOCK_N=bn, GPI=gpi, SPLIT=1, OUT_CHUNK=32, ASM=True, PREFETCH=ns > 1, OUT_PROGS=0, REP=1)
                loop = longest_loop(compile_sass(uniform.uniform_kernel, const, nw, ns))
                rows.append(("uniform tensor cores", f"{bits}-bit g128", (bn, words, nw, ns),
                             bn * gpi * 128 / (32 * nw), loop))
    for bn, bj, nw, ns in [(4, 64, 2, 3), (8, 64, 4, 2), (16, 64, 4, 3)]:
        const = dict(NCB=2, B=8, HAS_OUT=False, BLOCK_M=1, BLOCK_N=bn, BLOCK_J=bj, SPLIT=1, OUT_CHUNK=32,
                     PREFETCH=ns > 1, ASM=True)
        if "USE_LUT" in additive.additive_kernel.arg_names:
            # codeword gathers with K-contiguous rows, as until v9 (2x8 now stores its rows contiguous and
            # takes the table GEMV at batch 1; 1x16 keeps this layout and this loop)
            const.update(USE_LUT=False, PDL=False, stride_cj=1)
        rows.append(("additive", "2x8", (bn, bj * 2, nw, ns), bn * bj * 8 / (32 * nw),
                     longest_loop(compile_sass(additive.additive_kernel, const, nw, ns))))
    if "USE_LUT" in additive.additive_kernel.arg_names:  # the table-of-dot-products GEMV (session 20)
        for bn, bj, nw, ns in [(512, 8, 4, 2), (1024, 8, 8, 2), (512, 16, 8, 2), (256, 8, 4, 2)]:
            const = dict(NCB=2, B=8, USE_LUT=True, HAS_OUT=False, BLOCK_M=1, BLOCK_N=bn, BLOCK_J=bj, SPLIT=8,
                         OUT_CHUNK=32, PREFETCH=ns > 1, ASM=True, PDL=True, stride_cn=1)
            rows.append(("additive table", "2x8", (bn, bj * 2, nw, ns), bn * bj * 8 / (32 * nw),
                         longest_loop(compile_sass(additive.additive_kernel, const, nw, ns))))
    # per-column tables of one width (4 and 2 bits): in the table kernel until session 18 (KB = 128, at
    # the H100's chosen GEMV configurations; v6's kernel takes the word rows per iteration (R), earlier
    # ones the blocks (G)), since then the column-table kernel (codes along the rows, PRMT lookups)
    if table is not None and hasattr(table, "table_kernel"):
        for bits, per in ((4, 8), (2, 16)):
            for bn, words, nw, ns in [(4, 256, 2, 2), (16, 64, 4, 3), (8, 128, 4, 2), (4, 128, 2, 3)]:
                const = dict(B0=bits, B1=0, B2=0, B3=0, R0=words, R1=1, R2=1, R3=1, G0=words * per // 128, G1=1,
                             G2=1, G3=1, KB=128, TGS=0, HAS_PERM=False, HAS_OUT=False, BLOCK_M=1, BLOCK_N=bn,
                             OUT_CHUNK=32, PREFETCH=ns > 1)
                rows.append(("table", f"{bits}-bit", (bn, words, nw, ns), bn * words * per / (32 * nw),
                             longest_loop(compile_sass(table.table_kernel, const, nw, ns))))
    else:
        rows += column_table_rows(mods["column_tables"])
    print(f"kernels: {a.ref or 'this checkout'}\n\n| kernel | format | config (block_n, words, warps, stages) | "
          "weights/thread/iteration | loop instructions | per weight | top opcodes |\n|---|---|---|---|---|---|---|")
    out = []
    for kind, fmt, cfg, codes, loop in rows:
        top = ", ".join(f"{k} {v}" for k, v in opcode_counts(loop).most_common(5))
        print(f"| {kind} | {fmt} | {cfg} | {codes:.0f} | {len(loop)} | {len(loop) / codes:.2f} | {top} |")
        out.append({"kernel": kind, "format": fmt, "config": cfg, "weights_per_thread": codes,
                    "loop_instructions": len(loop), "per_weight": len(loop) / codes, "ref": a.ref})
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
