# ruff: noqa
# Instructions per code of the uniform GEMV loop, offline for sm_90 with the local Triton (3.9), session 17:
#   PYTHONPATH=benchmarks:kernels/src:... python3 docs/results/kernels/sass_v7_f16x2.py [REF]
# with REF = c82cd06 (v6) and 1f71e03 (the f16x2 experiment); columns: bits, config, codes per thread
# and loop (two iterations when unrolled), loop instructions, per code, top opcodes. Output: sass_v7_f16x2.txt.
import os, sys
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
import kernel_sass as ks
ref = sys.argv[1] if len(sys.argv) > 1 else None
mods = ks.kernel_modules(ref)
uniform = mods["uniform"]
for bits in (4, 2, 3):
    per = {4: 8, 2: 16, 3: 16}[bits]
    w0, w1 = {4: (4, 0), 2: (2, 0), 3: (2, 1)}[bits]
    for bn, words, nw, ns in [(8, 128, 8, 2), (16, 128, 8, 1), (16, 128, 16, 1), (4, 128, 2, 3), (32, 64, 4, 3)]:
        gpi = words * per // 128
        const = dict(GS=128, KB=128, PER=per, W0=w0, W1=w1, HAS_PERM=False, HAS_OUT=False, BLOCK_M=1,
                     BLOCK_N=bn, GPI=gpi, SPLIT=1, OUT_CHUNK=32, ASM=True, PREFETCH=ns > 1)
        codes = bn * gpi * 128 / (32 * nw) * (2 if ns > 1 else 1)
        loop = ks.longest_loop(ks.compile_sass(uniform.uniform_kernel, const, nw, ns))
        top = ", ".join(f"{k} {v}" for k, v in ks.opcode_counts(loop).most_common(7))
        print(bits, (bn, words, nw, ns), codes, len(loop), "%.2f" % (len(loop) / codes), top, flush=True)
