# ruff: noqa
# Shared-memory traffic and waits in the uniform kernel's batch loop (tl.dot, batch 16), per kernel version, offline
# (session 22): sm_90 SASS from the Triton on PYTHONPATH (for the H100's: the triton 3.6.0 wheel unpacked first on
# PYTHONPATH), longest loop of benchmarks/kernel_sass.py. From the repository root, after ab_v11/versions.sh d05b680:
#   PYTHONPATH=/tmp/t36:kernels/src:... python docs/results/kernels/ab_v12/sass_batch.py > sass_batch_v12.txt
import importlib, os, sys
sys.path.insert(0, "benchmarks")
sys.path.insert(0, "docs/results/kernels/ab_v11")
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
import triton
from kernel_sass import compile_sass, longest_loop, opcode_counts
print(f"triton {triton.__version__}\n\n| version | bits | config (block_n, words, warps, stages, split) | loop instructions | per code | STS | LDS+LDSM | BAR.SYNC | HGMMA | wgmma waits |\n|---|---|---|---|---|---|---|---|---|---|")
for ver, pkg in (("d05b680 (v11)", "kt_d05b680"), ("live (v12)", "lowbit.kernels.triton")):
    u = importlib.import_module(f"{pkg}.uniform")
    for bits, (bn, words, nw, ns, split) in [(4, (64, 16, 4, 4, 8)), (4, (64, 16, 4, 3, 8)), (4, (128, 16, 8, 4, 4)),
                                             (2, (64, 16, 4, 3, 8)), (2, (128, 16, 8, 4, 8)), (2, (64, 8, 4, 3, 8))]:
        per = 32 // bits
        gpi = max(words * per // 128, 1, -(-16 // (128 // per * (2 if "v12" in ver else 1))))
        const = dict(GS=128, KB=128, PER=per, W0=bits, W1=0, HAS_PERM=False, HAS_OUT=False, BLOCK_M=16, BLOCK_N=bn,
                     GPI=gpi, SPLIT=split, OUT_CHUNK=32, ASM=True, PREFETCH=False, OUT_PROGS=0)
        loop = longest_loop(compile_sass(u.uniform_kernel, const, nw, ns))
        c = opcode_counts(loop)
        waits = sum("WARPGROUP.DEPBAR" in x for x in loop)
        bars = sum("BAR.SYNC" in x for x in loop)
        codes = bn * gpi * 128 / (32 * nw)
        print(f"| {ver} | {bits} | {(bn, words, nw, ns, split)} | {len(loop)} | {len(loop) / codes:.2f} | {c['STS']} | "
              f"{c['LDS'] + c['LDSM']} | {bars} | {c['HGMMA']} | {waits} |")
