# ruff: noqa
# The uniform kernel's batch loop (tl.dot, batch 16), per kernel version, offline (session 23): sm_90 SASS from the
# Triton on PYTHONPATH (the H100's: the triton 3.6.0 wheel unpacked first on PYTHONPATH), longest loop of
# benchmarks/kernel_sass.py, and whether that Triton's ptxas -v (sm_90a) reports the wgmma serialized (info C7515).
# From the repository root, after ab_v11/versions.sh 86a7069:
#   PYTHONPATH=/tmp/t36:docs/results/kernels/ab_v11:kernels/src:... python docs/results/kernels/v13/sass_dot.py
import importlib, os, subprocess, sys, tempfile
sys.path.insert(0, "benchmarks")
sys.path.insert(0, "docs/results/kernels/ab_v11")
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
import triton
from kernel_sass import compile_kernel, longest_loop, opcode_counts
BIN = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")


def sass_and_ptxas(ck):
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(ck.asm["cubin"])
    sass = subprocess.run([os.path.join(BIN, "nvdisasm"), "-c", f.name], capture_output=True, text=True, check=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(ck.asm["ptx"])
    r = subprocess.run([os.path.join(BIN, "ptxas"), "-arch=sm_90a", "-v", f.name, "-o", f.name + ".cubin"],
                       capture_output=True, text=True)
    out = r.stdout + r.stderr
    return sass, "C7515" in out, out.split("Used ")[1].split(" registers")[0] if "Used " in out else "?"


print(f"triton {triton.__version__}\n\n| version | bits | config (block_n, words, warps, stages, split) | loop instructions | "
      "per code | STS | LDS+LDSM | BAR.SYNC | HGMMA | wgmma waits | C7515 (wgmma serialized) | registers |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|")
for ver, pkg in (("86a7069", "kt_86a7069"), ("live", "lowbit.kernels.triton")):
    u = importlib.import_module(f"{pkg}.uniform")
    for bits, (bn, words, nw, ns, split) in [(4, (64, 16, 4, 3, 8)), (4, (128, 16, 8, 4, 4)), (3, (64, 8, 4, 3, 8)),
                                             (2, (64, 8, 4, 3, 8)), (2, (64, 16, 4, 3, 8)), (2, (128, 16, 8, 4, 8)),
                                             (1, (64, 16, 4, 2, 8))]:
        per = {1: 32, 2: 16, 3: 16, 4: 8}[bits]
        gpi = max(words * per // 128, 1, -(-16 // (128 // per * 2)))
        w0, w1 = (2, 1) if bits == 3 else (bits, 0)
        const = dict(GS=128, KB=128, PER=per, W0=w0, W1=w1, HAS_PERM=False, HAS_OUT=False, BLOCK_M=16, BLOCK_N=bn,
                     GPI=gpi, SPLIT=split, OUT_CHUNK=32, ASM=True, PREFETCH=False, OUT_PROGS=0, REP=1)
        sass, serialized, regs = sass_and_ptxas(compile_kernel(u.uniform_kernel, const, nw, ns))
        loop = longest_loop(sass)
        c = opcode_counts(loop)
        waits = sum("WARPGROUP.DEPBAR" in x for x in loop)
        bars = sum("BAR.SYNC" in x for x in loop)
        codes = bn * gpi * 128 / (32 * nw)
        print(f"| {ver} | {bits} | {(bn, words, nw, ns, split)} | {len(loop)} | {len(loop) / codes:.2f} | {c['STS']} | "
              f"{c['LDS'] + c['LDSM']} | {bars} | {c['HGMMA']} | {waits} | {'yes' if serialized else 'no'} | {regs} |",
              flush=True)
