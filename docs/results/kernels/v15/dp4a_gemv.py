# ruff: noqa
# Session 25, a prototype (not in the package): the uniform GEMV with integer dot products, to see what its main loop
# costs. Activations become per-block fixed point, x_k ~ sx_b x_int_k with |x_int| < 2^(8 NPART - 1) (sx_b: the
# block's max |x| over 2^(8 NPART - 1) - 1, 128 inputs a block), split into NPART bytes (the top one signed); codes are
# stored four inputs a 32-bit word lane-wise (input 4 i + l of a word at bits 8 l + W i), so that
# `(w >> W i) & 0x0F0F0F0F` (4-bit; 0x03030303 at 2 bits) is four codes as bytes and one `dp4a` adds their four
# products with one byte of four activations. Per block and row: y += s sx_b sum_parts 2^(8 p) acc_p + b xsum_b.
# The activations' preparation (block scales, bytes, block sums) is done by torch and not timed, or (PREP in RUNS)
# by prep_kernel in the timed call, the GEMV its programmatic dependent launch. Codes, scales and offsets rotate through copies past L2, as the
# benchmark's layers do.
#   DP4A_RUN=prep python3 docs/results/kernels/v15/dp4a_gemv.py OUT.json   # GPU: times against the shipped GEMV (RUNS)
#   TRITON_INTERPRET=1 python3 docs/results/kernels/v15/dp4a_gemv.py  # CPU: correctness only (no inline PTX)
#   python3 docs/results/kernels/v15/dp4a_gemv.py --sass              # offline sm_90 loop (Triton 3.6 first on PYTHONPATH)
import json, os, sys
import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

INTERP = os.environ.get("TRITON_INTERPRET") == "1"


@triton.jit
def dot4(a, b, c, SIGNED: tl.constexpr, ASM: tl.constexpr):
    """``c + sum_l byte_l(a) byte_l(b)``: ``a``'s bytes unsigned, ``b``'s signed where ``SIGNED``."""
    if ASM:
        if SIGNED:
            v = tl.inline_asm_elementwise("dp4a.u32.s32 $0, $1, $2, $3;", "=r,r,r,r", [a, b, c], dtype=tl.int32,
                                          is_pure=True, pack=1)
        else:
            v = tl.inline_asm_elementwise("dp4a.u32.u32 $0, $1, $2, $3;", "=r,r,r,r", [a, b, c], dtype=tl.int32,
                                          is_pure=True, pack=1)
    else:
        v = c
        for l in tl.static_range(4):
            bl = (b >> (8 * l)) & 255
            if SIGNED:
                bl = tl.where(bl > 127, bl - 256, bl)
            v += ((a >> (8 * l)) & 255) * bl
    return v


@triton.jit
def prep_kernel(X, XQ, SX, XS, kq, NPART: tl.constexpr, PDL: tl.constexpr):
    """Block ``program_id(0)`` of 128 activations: its scale ``sx = max |x| / (2^(8 NPART - 1) - 1)``, its sum, and
    ``x_int = round(x / sx)`` as NPART bytes (most significant first, four inputs a word). ``PDL``: the GEMV launches
    at once and waits for these writes (``gdc_wait``)."""
    if PDL:
        gdc_launch_dependents()
    blk = tl.program_id(0)
    TOP: tl.constexpr = 2 ** (8 * NPART - 1) - 1
    x = tl.load(X + blk * 128 + tl.arange(0, 128)).to(tl.float32)
    sx = tl.maximum(tl.max(tl.abs(x), axis=0), 1e-30) / TOP
    xi = tl.minimum(tl.maximum(tl.floor(x / sx + 0.5), -TOP), TOP).to(tl.int32)
    tl.store(SX + blk, sx)
    tl.store(XS + blk, tl.sum(x, axis=0))
    sh = 8 * (tl.arange(0, 4))
    for p in tl.static_range(NPART):
        by = tl.reshape((xi >> (8 * (NPART - 1 - p))) & 255, (32, 4))
        tl.store(XQ + p * kq + blk * 32 + tl.arange(0, 32), tl.sum(by << sh[None, :], axis=1))


@triton.jit
def dp4a_gemv_kernel(Q, XQ, SX, XS, S, OFF, Y, N, K, row_words, kq, W: tl.constexpr, BLOCK_N: tl.constexpr,
                     GPI: tl.constexpr, NPART: tl.constexpr, ASM: tl.constexpr, TILE: tl.constexpr,
                     PDL: tl.constexpr = False):
    PER: tl.constexpr = 32 // W  # codes a word
    NSH: tl.constexpr = 8 // W  # shifts a word (four codes each)
    WB: tl.constexpr = 128 // PER  # words a block
    MASK: tl.constexpr = ((1 << W) - 1) * 0x01010101
    pid = tl.program_id(0)
    offs_n = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    rows = tl.minimum(offs_n, N - 1)
    n_blocks = K // 128
    acc = tl.zeros((BLOCK_N, GPI, WB), dtype=tl.float32)
    j = tl.arange(0, WB)
    if PDL:
        gdc_wait()
    for b0 in range(0, n_blocks, GPI):
        blk = tl.minimum(b0 + tl.arange(0, GPI), n_blocks - 1)
        ok = (b0 + tl.arange(0, GPI)) < n_blocks
        w = tl.load(Q + rows[:, None, None] * row_words + (blk[:, None] * WB + j[None, :])[None, :, :])
        s = tl.load(S + rows[:, None] * n_blocks + blk[None, :], mask=ok[None, :], other=0.0).to(tl.float32)
        b = tl.load(OFF + rows[:, None] * n_blocks + blk[None, :], mask=ok[None, :], other=0.0).to(tl.float32)
        sx = tl.load(SX + blk)
        xs = tl.load(XS + blk)
        v = tl.zeros((BLOCK_N, GPI, WB), dtype=tl.float32)
        if TILE:  # each part's activation words of the iteration as one (GPI, WB, NSH) tile (16-byte loads at 2 bits)
            sh = tl.arange(0, NSH)
            c4 = (w[:, :, :, None] >> (W * sh)[None, None, None, :]) & MASK
            for p in tl.static_range(NPART):
                xw = tl.load(XQ + p * kq + (blk[:, None, None] * 32 + j[None, :, None] * NSH + sh[None, None, :]))
                ip = dot4(c4, xw[None, :, :, :], tl.zeros((BLOCK_N, GPI, WB, NSH), dtype=tl.int32), p == 0, ASM)
                v = v * 256.0 + tl.sum(ip, axis=3).to(tl.float32)
        else:  # one 4-byte load per part and shift
            for p in tl.static_range(NPART):
                ip = tl.zeros((BLOCK_N, GPI, WB), dtype=tl.int32)
                for i in tl.static_range(NSH):
                    c = (w >> (W * i)) & MASK
                    xw = tl.load(XQ + p * kq + (blk[:, None] * 32 + j[None, :] * NSH + i))[None, :, :]
                    ip = dot4(c, xw, ip, p == 0, ASM)
                v = v * 256.0 + ip.to(tl.float32)
        acc += v * (s * sx[None, :])[:, :, None]
        acc += tl.where(j[None, None, :] == 0, (b * xs[None, :])[:, :, None], 0.0)
    y = tl.sum(tl.sum(acc, axis=2), axis=1)
    tl.store(Y + offs_n, y.to(Y.dtype.element_ty), mask=offs_n < N)


def pack_lanes(codes: torch.Tensor, w: int) -> torch.Tensor:
    """``(N, K)`` codes -> ``(N, K / PER)`` int32: input ``4 i + l`` of a word at bits ``8 l + w i``."""
    n, k = codes.shape
    nsh = 8 // w
    c = codes.long().reshape(n, k // (4 * nsh), nsh, 4)
    sh = 8 * torch.arange(4)[None, None, None, :] + w * torch.arange(nsh)[None, None, :, None]
    words = (c << sh.to(c.device)).sum((2, 3))
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32).contiguous()


def prepare_x(x: torch.Tensor, npart: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(K,)`` activations -> bytes ``(NPART, K / 4)`` int32 (top part signed), block scales and block sums."""
    xb = x.float().reshape(-1, 128)
    top = 2 ** (8 * npart - 1) - 1
    sx = xb.abs().amax(1).clamp_min(1e-30) / top
    xi = torch.round(xb / sx[:, None]).clamp(-top, top).long().reshape(-1)  # fp32 division may round past top
    parts = [(xi >> (8 * (npart - 1 - p))) & 255 for p in range(npart)]  # most significant first
    by = torch.stack(parts).reshape(npart, -1, 4)
    words = (by << (8 * torch.arange(4, device=x.device))).sum(-1)
    words = torch.where(words >= 2**31, words - 2**32, words).to(torch.int32).contiguous()
    return words, sx.contiguous(), xb.sum(1).contiguous()


def prep_launch(x, npart, pdl):
    """The activations' bytes, block scales and sums by :func:`prep_kernel` (one launch)."""
    k = x.shape[-1]
    xq = torch.empty(npart, k // 4, dtype=torch.int32, device=x.device)
    sx = torch.empty(k // 128, dtype=torch.float32, device=x.device)
    xs = torch.empty_like(sx)
    prep_kernel[(k // 128,)](x, xq, sx, xs, xq.shape[1], NPART=npart, PDL=pdl, num_warps=4)
    return xq, sx, xs


def run(q, s, off, x, n, k, w, bn, gpi, npart, nw, prepared=None, tile=False, prep=False):
    """The GEMV on prepared activations (torch's, untimed), or with ``prep`` after :func:`prep_kernel` in the same
    call, the GEMV its programmatic dependent launch on a GPU."""
    pdl = prep and not INTERP
    xq, sx, xs = prep_launch(x, npart, pdl) if prep else prepared
    y = torch.empty(1, n, dtype=x.dtype, device=x.device)
    dp4a_gemv_kernel[(triton.cdiv(n, bn),)](q, xq, sx, xs, s, off, y, n, k, q.shape[1], xq.shape[1], W=w, BLOCK_N=bn,
                                            GPI=gpi, NPART=npart, ASM=not INTERP, TILE=tile, PDL=pdl, num_warps=nw,
                                            **({"launch_pdl": True} if pdl else {}))
    return y


def weights(n, k, w, dev):
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 2**w, (n, k), generator=g)
    s = (torch.rand(n, k // 128, generator=g) * 0.01 + 0.005).half()
    z = torch.randint(0, 2**w, (n, k // 128), generator=g).float()
    off = (-z * s.float()).half()
    wd = (codes.float().reshape(n, -1, 128) * s.float()[..., None] + off.float()[..., None]).reshape(n, k)
    return pack_lanes(codes, w).to(dev), s.to(dev), off.to(dev), wd.to(dev)


# The three GPU runs, DP4A_RUN=first (dp4a_gemv_h100_v15.json), tile (dp4a_gemv_tile_h100_v15.json) and prep
# (dp4a_gemv_prep_h100_v15.json, the default): activation bytes NPART, and configurations (BLOCK_N, GPI, warps, TILE,
# PREP), PREP timing the activations' preparation kernel with each call. The interpreter runs CPU_RUN.
RUNS = {"first": ((2, 3), [(8, 4, 4, False, False), (8, 8, 8, False, False), (16, 4, 8, False, False),
                           (16, 8, 8, False, False), (16, 4, 4, False, False), (32, 4, 8, False, False),
                           (32, 2, 8, False, False), (16, 2, 4, False, False)]),
        "tile": ((2, 3), [(8, 4, 4, False, False), (8, 8, 8, False, False)] + [
            (bn, gpi, nw, True, False) for bn, gpi, nw in [(8, 4, 4), (8, 8, 8), (8, 16, 8), (4, 8, 8), (4, 16, 8),
                                                           (4, 8, 4), (16, 8, 8), (8, 8, 16), (16, 16, 16), (8, 4, 8)]]),
        "prep": ((2,), [(8, 4, 4, False, False), (8, 8, 8, False, False), (8, 4, 4, False, True), (8, 8, 8, False, True),
                        (4, 8, 8, False, True), (8, 16, 8, False, True), (16, 8, 8, False, True)])}
CPU_RUN = ((2, 3), [(16, 2, 4, False, False), (16, 2, 4, True, False), (16, 2, 4, False, True)])


def sass():
    """The main loop's instructions, offline for sm_90."""
    sys.path.insert(0, "benchmarks")
    import kernel_sass
    from kernel_sass import compile_sass, longest_loop, opcode_counts
    kernel_sass.POINTERS |= {"XQ", "SX", "XS"}
    kernel_sass.POINTER_TYPES.update({"Q": "*i32", "XQ": "*i32", "SX": "*fp32", "XS": "*fp32", "S": "*fp16", "OFF": "*fp16"})
    kernel_sass.DIV16 |= {"kq"}
    print(f"triton {triton.__version__}\n\n| bits | NPART | (BLOCK_N, GPI, warps, TILE) | loop | per code | IDP | LOP3 | SHF | LDG |\n|---|---|---|---|---|---|---|---|---|")
    for w in (2, 4):
        for npart in (2, 3):
            for bn, gpi, nw, tile in [(16, 8, 8, False), (8, 8, 8, False), (16, 8, 8, True), (8, 8, 8, True), (4, 16, 8, True)]:
                c = dict(W=w, BLOCK_N=bn, GPI=gpi, NPART=npart, ASM=True, TILE=tile)
                loop = longest_loop(compile_sass(dp4a_gemv_kernel, c, nw, 1))
                cnt = opcode_counts(loop)
                codes = bn * gpi * 128 / (32 * nw)
                print(f"| {w} | {npart} | {(bn, gpi, nw, tile)} | {len(loop)} | {len(loop) / codes:.2f} | {cnt['IDP']} | {cnt['LOP3']} | {cnt['SHF']} | {cnt['LDG']} |")


def shipped_us(n, k, w, x, dev, l2):
    """The shipped uniform GEMV on a layer of the same shape, timed the same way."""
    from lowbit.kernels.triton import uniform
    from lowbit.kernels.triton.random_weights import random_uniform
    from lowbit.kernels.triton.timing import graph_us, map_tensors, n_copies, state_bytes
    st = uniform.prepare(random_uniform(n, k, w, 128, device=dev), dev)
    uniform.run(st, x)
    copies = [st] + [map_tensors(st, torch.clone) for _ in range(n_copies(state_bytes(st), l2) - 1)]
    return graph_us([lambda c=c: uniform.run(c, x) for c in copies])


def main():
    if "--sass" in sys.argv:
        return sass()
    dev = "cpu" if INTERP else "cuda"
    nparts, configs = CPU_RUN if INTERP else RUNS[os.environ.get("DP4A_RUN", "prep")]
    l2 = 0 if INTERP else torch.cuda.get_device_properties(dev).L2_cache_size
    rows = []
    shapes = [(64, 256)] if INTERP else [(4096, 4096), (4096, 11008), (11008, 4096)]
    for w in (2, 4):
        for n, k in shapes:
            q, s, off, wd = weights(n, k, w, dev)
            x = torch.randn(1, k, device=dev).half()
            ref = x.float() @ wd.T
            copies = []
            if not INTERP:  # codes, scales and offsets rotated past L2
                from lowbit.kernels.triton.timing import graph_us, n_copies
                copies = [(q, s, off)] + [(q.clone(), s.clone(), off.clone())
                                          for _ in range(n_copies(q.numel() * 4 + s.numel() * 4, l2) - 1)]
            for npart in nparts:
                prep = prepare_x(x[0], npart)
                for bn, gpi, nw, tile, pre in configs:
                    y = run(q, s, off, x, n, k, w, bn, gpi, npart, nw, prep, tile, pre).float()
                    err = float((y - ref).abs().max() / ref.abs().max())
                    us = None
                    if not INTERP:
                        us = graph_us([lambda c=c: run(*c, x, n, k, w, bn, gpi, npart, nw, prep, tile, pre) for c in copies])
                    rows.append(dict(bits=w, shape=[n, k], npart=npart, config=[bn, gpi, nw], tile=tile, prep=pre, us=us,
                                     rel_err=err))
                    print(w, n, k, npart, (bn, gpi, nw, tile, pre), us and f"{us:.2f}", f"{err:.1e}", flush=True)
            del copies
            if not INTERP:  # the shipped GEMV on a layer of the same shape, in the same run
                us = shipped_us(n, k, w, x, dev, l2)
                rows.append(dict(bits=w, shape=[n, k], shipped=True, us=us))
                print(w, n, k, "shipped", f"{us:.2f}", flush=True)
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        json.dump(rows, open(sys.argv[1], "w"), indent=1)


if __name__ == "__main__":
    main()
