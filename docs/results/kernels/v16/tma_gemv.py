# ruff: noqa
# Session 26: a prototype uniform GEMV whose code words come through the Hopper tensor memory accelerator (TMA):
# a host tensor descriptor of the (N, n_blocks, WB) word plane, one (BLOCK_N, GPI, WB) box an iteration, the loop a
# tl.range(num_stages=S) that Triton pipelines through shared memory with mbarriers (few instructions a box, many
# bytes in flight). The arithmetic is the shipped GEMV's (uniform.gemv_block); scales and offsets are plain loads.
# 2- and 4-bit codes (one plane), batch 1, no act-order, no outliers. Timed like the benchmark (rotated copies, one
# CUDA graph) against the shipped GEMV at its per-GPU configuration in the same run. From the repository root:
#   python3 docs/results/kernels/v16/tma_gemv.py OUT.json        (GPU)
#   python3 docs/results/kernels/v16/tma_gemv.py --sass          (offline sm_90 SASS counts; Triton 3.6 first on PYTHONPATH)
import json, sys
import torch
import triton
import triton.language as tl
from lowbit.kernels.triton import common, uniform

@triton.jit
def tma_gemv_kernel(X, Y, QD, S, OFF, N, n_blocks, groups, MAGIC, KB: tl.constexpr, PER: tl.constexpr,
                    W0: tl.constexpr, BLOCK_N: tl.constexpr, GPI: tl.constexpr, STAGES: tl.constexpr):
    """y[n] = sum_k x[k] (s q + b) over all of K for BLOCK_N rows; words by TMA (QD: descriptor of (N, n_blocks, WB))."""
    WB: tl.constexpr = KB // PER
    pid = tl.program_id(0)
    rows = tl.minimum(pid * BLOCK_N + tl.arange(0, BLOCK_N), N - 1)
    acc = tl.zeros((BLOCK_N, GPI, WB), dtype=tl.float32)
    for b0 in tl.range(0, n_blocks, GPI, num_stages=STAGES):
        w0 = QD.load([pid * BLOCK_N, b0, 0])  # (BLOCK_N, GPI, WB); rows and blocks past the end read as 0
        blk = b0 + tl.arange(0, GPI)
        ok = blk < n_blocks
        sp = rows[:, None] * groups + (blk * KB // 128)[None, :]
        sh = tl.load(S + sp, mask=ok[None, :], other=0.0)
        bh = tl.load(OFF + sp, mask=ok[None, :], other=0.0)
        acc = uniform.gemv_block(acc, X, X, w0, w0, sh, bh, b0, n_blocks, MAGIC, KB, PER, W0, 0, False, GPI, True, 1)
    y = tl.sum(tl.sum(acc, axis=2), axis=1)
    offs = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    tl.store(Y + offs, y.to(Y.dtype.element_ty), mask=offs < N)


def launch(st, x, bn, words, warps, stages, desc=None):
    from triton.tools.tensor_descriptor import TensorDescriptor
    per = common.PER[st.bits]
    kb = st.block
    wb = kb // per
    n, k = st.shape
    n_blocks = k // kb
    gpi = max(1, words * per // kb)
    q = st.planes[0]
    if desc is None:
        desc = TensorDescriptor(q, [n, n_blocks, wb], [q.stride(0), wb, 1], [bn, gpi, wb])
    y = torch.empty(1, n, dtype=x.dtype, device=x.device)
    tma_gemv_kernel[(triton.cdiv(n, bn),)](x, y, desc, st.scales, st.offsets, n, n_blocks, st.scales.shape[1],
                                           0x4B000000, KB=kb, PER=per, W0=st.bits, BLOCK_N=bn, GPI=gpi, STAGES=stages,
                                           num_warps=warps, num_stages=1)
    return y


CONFIGS = [(16, 128, 8, 3), (16, 128, 8, 4), (8, 128, 8, 3), (8, 128, 4, 3), (16, 64, 4, 4), (16, 256, 8, 3),
           (32, 64, 8, 4), (8, 256, 8, 2), (16, 128, 16, 3), (32, 128, 16, 3)]


def sass() -> None:
    sys.path.insert(0, "benchmarks")
    from kernel_sass import compile_kernel, disassemble, longest_loop, opcode_counts
    for bits, (bn, words, warps, stages) in [(4, (16, 128, 8, 3)), (2, (16, 128, 8, 3))]:
        per = common.PER[bits]
        gpi = words * per // 128
        const = dict(KB=128, PER=per, W0=bits, BLOCK_N=bn, GPI=gpi, STAGES=stages)
        ck = compile_kernel(tma_gemv_kernel, const, warps, 1, {"QD": f"tensordesc<i32[{bn}, {gpi}, {128 // per}]>"})
        s = disassemble(ck)
        loop = longest_loop(s)
        codes = bn * words * per / (warps * 32)
        print(bits, (bn, words, warps, stages), "loop", len(loop), f"{len(loop) / codes:.2f} a code",
              dict(opcode_counts(loop).most_common(12)), "UTMALDG" in s, "shared", ck.metadata.shared)


def main() -> None:
    if "--sass" in sys.argv:
        return sass()
    sys.path.insert(0, "benchmarks")
    from gpu_kernels import Timer, lowbit_formats
    from lowbit.kernels.triton.timing import past_l2
    dev = torch.device("cuda")
    triton.set_allocator(lambda size, align, stream: torch.empty(size, dtype=torch.int8, device=dev))
    timer = Timer(dev, 20)
    formats = lowbit_formats()
    rows = []
    torch.manual_seed(0)
    with torch.no_grad():
        for name in ("uniform4 g128", "uniform2 g128"):
            kind, build = formats[name]
            for n, k in ((4096, 4096), (4096, 11008), (11008, 4096)):
                qw = build(n, k, dev)
                st = uniform.prepare(qw, dev)
                copies = past_l2(st, dev)
                x = torch.randn(1, k, device=dev).half()
                ref = uniform.run(st, x).float()
                for rep in range(2):
                    us = timer([lambda s=s: uniform.run(s, x) for s in copies])[0]
                    rows.append(dict(format=name, shape=[n, k], rep=rep, kernel="shipped", us=us))
                    print(name, n, k, rep, "shipped", f"{us:.2f}", flush=True)
                    for cfg in CONFIGS:
                        try:
                            y = launch(st, x, *cfg).float()
                            err = float((y - ref).abs().max() / ref.abs().max())
                            us = timer([lambda s=s: launch(s, x, *cfg) for s in copies])[0]
                        except Exception as e:  # a configuration that does not compile or launch
                            print(name, n, k, rep, cfg, "failed:", str(e)[:200], flush=True)
                            continue
                        rows.append(dict(format=name, shape=[n, k], rep=rep, kernel="tma", config=cfg, us=us, rel_err=err))
                        print(name, n, k, rep, "tma", cfg, f"{us:.2f}", f"{err:.1e}", flush=True)
                del copies, st, qw
    json.dump(rows, open(sys.argv[1], "w"), indent=1)


if __name__ == "__main__":
    main()
