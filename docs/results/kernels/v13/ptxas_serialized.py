# ruff: noqa
# Whether ptxas serializes the uniform kernel's wgmma (info C7515), per kernel version, offline (session 23): the PTX of
# the Triton on PYTHONPATH (the H100's: the triton 3.6.0 wheel unpacked first on PYTHONPATH) through its own
# ptxas -v for sm_90a. From the repository root, after ab_v11/versions.sh 86a7069:
#   PYTHONPATH=/tmp/t36:docs/results/kernels/ab_v11:kernels/src:... python docs/results/kernels/v13/ptxas_serialized.py
import importlib, os, subprocess, sys, tempfile
sys.path.insert(0, "benchmarks")
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import kernel_sass as ks
ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
print(f"triton {triton.__version__}\n\n| version | bits | config | C7515 (wgmma serialized) | registers |\n|---|---|---|---|---|")
for ver, pkg in (("86a7069", "kt_86a7069"), ("live", "lowbit.kernels.triton")):
    u = importlib.import_module(f"{pkg}.uniform")
    for bits, (bn, words, nw, ns, split) in [(4, (64, 16, 4, 3, 8)), (3, (64, 8, 4, 3, 8)), (2, (64, 8, 4, 3, 8)),
                                             (2, (128, 16, 8, 4, 8)), (1, (64, 16, 4, 2, 8))]:
        per = {1: 32, 2: 16, 3: 16, 4: 8}[bits]
        gpi = max(words * per // 128, 1, -(-16 // (128 // per * 2)))
        w0, w1 = (2, 1) if bits == 3 else (bits, 0)
        const = dict(GS=128, KB=128, PER=per, W0=w0, W1=w1, HAS_PERM=False, HAS_OUT=False, BLOCK_M=16, BLOCK_N=bn,
                     GPI=gpi, SPLIT=split, OUT_CHUNK=32, ASM=True, PREFETCH=False, OUT_PROGS=0, REP=1)
        fn = u.uniform_kernel
        names = fn.arg_names
        c = {k: v for k, v in const.items() if k in names}
        sig = {n: "constexpr" if n in c else ks.POINTER_TYPES.get(n, "*fp16") if n in ks.POINTERS else "i32" for n in names}
        attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in names if n in ks.POINTERS or n in ks.DIV16}
        src = ASTSource(fn=fn, signature=sig, constexprs={(names.index(k),): v for k, v in c.items()}, attrs=attrs)
        ck = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": nw, "num_stages": ns})
        with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
            f.write(ck.asm["ptx"])
        r = subprocess.run([ptxas, "-arch=sm_90a", "-v", f.name, "-o", f.name + ".cubin"], capture_output=True, text=True)
        out = r.stdout + r.stderr
        regs = out.split("Used ")[1].split(" registers")[0] if "Used " in out else "?"
        print(f"| {ver} | {bits} | {(bn, words, nw, ns, split)} | {'yes' if 'C7515' in out else 'no'} | {regs} |", flush=True)
