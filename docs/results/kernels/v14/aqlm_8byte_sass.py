# ruff: noqa
# Offline sm_90 counts of the AQLM batch loop (2x8, batch 16, 64 rows, 32 words, 4 warps, 1 stage) for the shipped
# kernel and for aqlm_8byte_gathers.patch (session 24). Needs Triton 3.6's ptxas/nvdisasm first on PYTHONPATH. From
# the repository root:
#   mkdir -p /tmp/k8 && git archive 0e44b79 kernels/src/lowbit/kernels/triton | tar -x -C /tmp/k8
#   (cd /tmp/k8 && patch -p1 < $OLDPWD/docs/results/kernels/v14/aqlm_8byte_gathers.patch)
#   mkdir -p /tmp/k8pkg/aqlm8 && cp /tmp/k8/kernels/src/lowbit/kernels/triton/*.py /tmp/k8pkg/aqlm8/
#   PYTHONPATH=<triton 3.6>:/tmp/k8pkg:$PYTHONPATH python3 docs/results/kernels/v14/aqlm_8byte_sass.py \
#       lowbit.kernels.triton.additive aqlm8.additive
import importlib, sys
sys.path.insert(0, "benchmarks")
import kernel_sass as ks

for modname in sys.argv[1:]:
    mod = importlib.import_module(modname)
    const = dict(NCB=2, B=8, USE_LUT=False, HAS_OUT=False, BLOCK_M=16, BLOCK_N=64, BLOCK_J=16, SPLIT=8,
                 OUT_CHUNK=32, PREFETCH=False, ASM=True, PDL=False, stride_cn=1)
    ck = ks.compile_kernel(mod.additive_kernel, const, 4, 1)
    conv = sum("ttg.convert_layout" in l for l in ck.asm["ttgir"].splitlines())
    loop = ks.longest_loop(ks.compile_sass(mod.additive_kernel, const, 4, 1))
    c = ks.opcode_counts(loop)
    keep = {k: c[k] for k in ("BAR", "STS", "LDS", "LDSM", "LDG", "HGMMA", "HADD2", "IMAD", "LEA") if c[k]}
    print(f"{modname}: {len(loop)} instructions an iteration, {conv} convert_layout in the kernel, {keep}")
