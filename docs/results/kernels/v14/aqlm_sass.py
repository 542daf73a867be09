# ruff: noqa
# The AQLM batch loop compiled offline for sm_90 (session 24): instructions an iteration of additive_kernel at batch
# 16 (BLOCK_M 16, 2x8 codebooks, 1 stage as batches run, split 8), as shipped and in the variants of VARIANTS, made
# by textual edits of the kernels (edited_kernels.py), among them:
#   swapped: Y^T = W_hat X^T, the dequantized weights as the register operand (wgmma at 64 rows), as the uniform
#            batches do;
#   swapped + words: also the codebooks gathered as 32-bit words, the two added in f16x2, split by one mov (as the
#            uniform batch loop makes its pairs).
# The edits apply to the kernels of 66c6b73 (before codeword_pairs, which ships the last variant; KERNELS_SRC=a
# copy of that tree's kernels/src/lowbit/kernels/triton, e.g. from git archive).
# Needs Triton 3.6's ptxas/nvdisasm (the GPU machine's version; its wheel unpacked first on PYTHONPATH).
#   python3 docs/results/kernels/v14/aqlm_sass.py > OUT.txt   (repository root, packages on PYTHONPATH)
import sys
sys.path.insert(0, "benchmarks")
sys.path.insert(0, "docs/results/kernels/v14")
import kernel_sass as ks
from edited_kernels import edited

SWAP = [("common", """        w2 = tl.reshape(w, (BLOCK_N, C)).to(x.dtype)
        acc = tl.dot(tl.reshape(x, (BLOCK_M, C)), tl.trans(w2), acc)""",
         """        w2 = tl.reshape(w, (BLOCK_N, C)).to(x.dtype)
        acc = tl.dot(w2, tl.trans(tl.reshape(x, (BLOCK_M, C))), acc)"""),
        ("common", """        acc = tl.sum(tl.sum(acc, axis=2), axis=1)[None, :]
    return acc""", """        acc = tl.sum(tl.sum(acc, axis=2), axis=1)[None, :]
    else:
        acc = tl.trans(acc)
    return acc"""),
        ("common", """        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    return acc""", """        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    return acc""")]
WORDS = [("additive", """            w = tl.load(CB + (c & ((1 << B) - 1))[:, :, None] * 8 + e[None, None, :])
            for i in tl.static_range(1, NCB):
                code = (c >> (i * B)) & ((1 << B) - 1)
                w += tl.load(CB + (i << B) * 8 + code[:, :, None] * 8 + e[None, None, :])""",
          """            e4 = tl.arange(0, 4)
            CBW = CB.to(tl.pointer_type(tl.int32))
            v = tl.load(CBW + (c & ((1 << B) - 1))[:, :, None] * 4 + e4[None, None, :])
            for i in tl.static_range(1, NCB):
                code = (c >> (i * B)) & ((1 << B) - 1)
                v2 = tl.load(CBW + (i << B) * 4 + code[:, :, None] * 4 + e4[None, None, :])
                v = tl.inline_asm_elementwise("add.f16x2 $0, $1, $2;", "=r,r,r", [v, v2], dtype=tl.int32,
                                              is_pure=True, pack=1)
            lo, hi = tl.inline_asm_elementwise("mov.b32 {$0, $1}, $2;", "=h,=h,r", [v],
                                               dtype=(tl.float16, tl.float16), is_pure=True, pack=1)
            w = tl.join(lo, hi)""")]
# the codes loaded once more for the gathers, as a (BLOCK_N, BLOCK_J, 4) tile (each code repeated along the words),
# so that the gathers' addresses come from a load whose pointers depend on indices alone
CODES3 = [("additive", """            v = tl.load(CBW + (c & ((1 << B) - 1))[:, :, None] * 4 + e4[None, None, :])""",
           """            c3 = tl.load(C + offs_n[:, None, None] * stride_cn + jj[None, :, None] * stride_cj + 0 * e4[None, None, :],
                         mask=(offs_n < N)[:, None, None] & ok[None, :, None], other=0).to(tl.int32) & 0xFFFF
            c = c3
            v = tl.load(CBW + (c & ((1 << B) - 1)) * 4 + e4[None, None, :])"""),
          ("additive", """                v2 = tl.load(CBW + (i << B) * 4 + code[:, :, None] * 4 + e4[None, None, :])""",
           """                v2 = tl.load(CBW + (i << B) * 4 + code * 4 + e4[None, None, :])""")]
# the codes and codebook words loaded by inline PTX (ld.global.nc), which Triton's coalescing does not give a layout of
# its own: the loads take the layout the dot operand propagates back (rows and groups clamped, not masked: the
# activations of groups past the end are zero, and the store masks rows past N)
ASMLOAD = [("additive", """            v = tl.load(CBW + (c & ((1 << B) - 1))[:, :, None] * 4 + e4[None, None, :])""",
            """            p3 = C + tl.minimum(offs_n, N - 1)[:, None, None] * stride_cn + tl.minimum(jj, j_end - 1)[None, :, None] * stride_cj + 0 * e4[None, None, :]
            c = tl.inline_asm_elementwise("ld.global.nc.u16 $0, [$1];", "=h,l", [p3], dtype=tl.int16, is_pure=True,
                                          pack=1).to(tl.int32) & 0xFFFF
            v = tl.inline_asm_elementwise("ld.global.nc.b32 $0, [$1];", "=r,l",
                                          [CBW + (c & ((1 << B) - 1)) * 4 + e4[None, None, :]], dtype=tl.int32,
                                          is_pure=True, pack=1)"""),
           ("additive", """                v2 = tl.load(CBW + (i << B) * 4 + code[:, :, None] * 4 + e4[None, None, :])""",
            """                v2 = tl.inline_asm_elementwise("ld.global.nc.b32 $0, [$1];", "=r,l",
                                               [CBW + (i << B) * 4 + code * 4 + e4[None, None, :]], dtype=tl.int32,
                                               is_pure=True, pack=1)""")]
# the codes by the kernel's own tile load (one conversion of the small code tile), the words by inline PTX
ASMWORDS = [("additive", ASMLOAD[0][1], """            v = tl.inline_asm_elementwise("ld.global.nc.b32 $0, [$1];", "=r,l",
                                          [CBW + (c & ((1 << B) - 1))[:, :, None] * 4 + e4[None, None, :]],
                                          dtype=tl.int32, is_pure=True, pack=1)"""),
            ("additive", ASMLOAD[1][1], ASMLOAD[1][2].replace("code * 4", "code[:, :, None] * 4"))]
VARIANTS = {"shipped": [], "swapped": SWAP, "swapped + words": SWAP + WORDS,
            "swapped + words + 3-D codes": SWAP + WORDS + CODES3, "swapped + words by PTX loads": SWAP + WORDS + ASMLOAD,
            "swapped + words by PTX, codes by tile": SWAP + WORDS + ASMWORDS}


for name, edits in VARIANTS.items():
    mod = edited(name, edits, "additive")
    for bn, bj, nw in [(64, 16, 4), (32, 32, 4)]:
        const = dict(NCB=2, B=8, USE_LUT=False, HAS_OUT=False, BLOCK_M=16, BLOCK_N=bn, BLOCK_J=bj, SPLIT=8,
                     OUT_CHUNK=32, PREFETCH=False, ASM=True, PDL=False, stride_cn=1)
        ck = ks.compile_kernel(mod.additive_kernel, const, nw, 1)
        converts = sum("ttg.convert_layout" in l for l in ck.asm["ttgir"].splitlines())
        loop = ks.longest_loop(ks.compile_sass(mod.additive_kernel, const, nw, 1))
        counts = ks.opcode_counts(loop)
        keep = {k: counts[k] for k in ("BAR", "STS", "LDS", "LDSM", "LDG", "HMMA", "HGMMA", "HADD2") if counts[k]}
        print(f"{name:38s} ({bn} rows, {bj * 2} words, {nw} warps): {len(loop)} instructions an iteration, "
              f"{converts} convert_layout in the kernel, {keep}", flush=True)
