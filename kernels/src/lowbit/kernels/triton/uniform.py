"""Uniform 1..4-bit weights with group scales and zeros: ``y = x @ W_hat^T`` in one Triton launch.

``W_hat[n, k] = s[g(k), n] (q[k, n] - z[g(k), n])`` with ``g(k) = k // group_size`` (the ``uniform``
format of :mod:`lowbit.core.formats`; GPTQ, arXiv 2210.17323; SpQR's second-order statistics are
dequantized once at prepare). Layout built once by :func:`prepare`:

- codes in the block-interleaved K-contiguous layout (:func:`lowbit.kernels.triton.common.pack_codes`,
  blocks of ``KB = gcd(g, 128)`` inputs);
- scales ``s`` and offsets ``b = -z s`` ``(d_out, d_in / g)`` fp16 (``W_hat = s q + b``), loaded once per
  block and row as a ``(BLOCK_N, GPI)`` tile and broadcast over the block's codes;
- act-order (``g_idx``, GPTQ's ``desc_act``): columns permuted once so that groups are contiguous
  (each group must hold exactly ``group_size`` columns, as GPTQ produces), and the kernel reads
  ``x[perm[k]]`` (a gather on the small activation vector, no extra launch);
- sparse outliers in the same pass (:func:`lowbit.kernels.triton.common.outliers_begin`,
  :func:`~lowbit.kernels.triton.common.outliers_end`).

Two paths (``benchmarks/kernel_sass.py`` counts their compiled loops, ``docs/results/kernels/sass_v5.json``):

- GEMV on the CUDA cores (one activation row, :func:`gemv_loop`): per code one LOP3 (the code's bits
  masked in place and or-ed into the bits of a power of two chosen so that the code's bit position
  cancels, :func:`code_value`), one FADD and one FFMA; per input one conversion and one FADD (``sum x``), shared
  by a thread's rows; per word position of a block ``s sum q x + b sum x``; the accumulator is reduced
  over K once. 5.3 instructions per 4-bit code and 4.7-4.9 per 2-bit code at two rows per thread
  (v4, which multiplied each activation by the power of two instead: 6.2 and 5.4-5.5), 4.3-4.7 and
  3.8-4.2 at more rows per thread. The loop's instruction count does not set the time alone: a variant with the
  activations' side precomputed by a second launch (4.4 per 4-bit code) ran its main kernel no faster
  than v4 on the H100 (docs/results.md, "v5").
- Tensor cores (batches, :func:`dot_loop`): ``Y^T = W_hat X^T`` with the weights as the register
  operand. Two codes of a word (bits ``i w`` and ``i w + 16``) become one f16x2 register ``1024 + q``
  with one shift and one LOP3, then ``(v - 1024) s + b`` with one HADD2 and one HFMA2 (inline PTX;
  Marlin, arXiv 2408.11743, does the same with the zero subtracted first): 3.5-4.0 instructions per
  code at 64 and 128 rows. A batch of one padded to 16 rows this way was slower than the GEMV on the
  H100 at every benchmark shape (docs/results.md), so a batch of one stays on the GEMV.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor

from lowbit.core.formats import QuantizedWeight

from .common import (
    PER,
    PLANES,
    Config,
    Outliers,
    block_m,
    block_size,
    blocks_per_iter,
    candidates,
    grid_outliers,
    load_words,
    loads_ahead,
    out_chunk,
    outlier_args,
    outliers_begin,
    outliers_end,
    output,
    pack_codes,
    run_tuned,
    split_blocks,
    store_y,
)


@dataclass
class UniformState:
    """The kernel layout of one uniform weight (see the module docstring)."""

    planes: list[Tensor]  # (d_out, d_in / PER) int32 [, (d_out, d_in / 16) int16 high bits of 3-bit codes]
    scales: Tensor  # (d_out, d_in / g) fp16
    offsets: Tensor  # (d_out, d_in / g) fp16: b = -z s
    perm: Tensor | None  # (d_in,) int32 input column of each kernel column (act-order), or None
    outliers: Outliers | None
    bits: int
    group_size: int
    block: int  # KB
    shape: tuple[int, int]


def group_perm(qw: QuantizedWeight) -> Tensor | None:
    """Column order making ``qw``'s groups contiguous (act-order), or None when they already are."""
    if qw.g_idx is None:
        return None
    d_in = qw.shape[1]
    gs = qw.group_size or d_in
    g_idx = qw.g_idx.long()
    perm = torch.argsort(g_idx, stable=True)
    if not torch.equal(g_idx[perm].cpu(), torch.arange(d_in) // gs):
        raise ValueError("g_idx groups are not all of group_size columns")
    return perm


def prepare(qw: QuantizedWeight, device: torch.device | str | None = None) -> UniformState:
    """Re-layout a uniform ``qw`` for the kernel (once), on ``device`` (default: where ``qw`` is)."""
    dev = torch.device(device) if device is not None else qw.codes.device
    d_out, d_in = qw.shape
    gs = qw.group_size or d_in
    scales, zeros = qw.group_params()  # (d_out, d_in / g)
    codes = qw.codes.to(dev)
    perm = group_perm(qw)
    if perm is not None:
        perm = perm.to(dev)
        codes = codes[:, perm]
    bits, kb = int(qw.bits), block_size(d_in, gs)
    scales, zeros = scales.to(dev), zeros.to(dev)
    return UniformState(pack_codes(codes, bits, kb), scales.half().contiguous(), (-zeros * scales).half().contiguous(),
                        None if perm is None else perm.to(torch.int32), grid_outliers(qw, dev), bits, gs, kb,
                        (d_out, d_in))


@triton.jit
def pair_codes(w0, w1h, i: tl.constexpr, W0: tl.constexpr, W1: tl.constexpr):
    """Codes ``i`` and ``i + PER / 2`` of each word as the two halves of an f16x2 ``1024 + q``: a ``W0``-bit
    plane word holds them at bits ``i W0`` and ``i W0 + 16`` (``PER W0 / 2 = 16``), so one shift and
    one LOP3 (``(w >> i W0) & mask | 0x64006400``) give both, exactly (fp16 integers below 2048). 3-bit
    codes or in their high bits from ``w1h`` (:func:`spread_high`)."""
    v = (w0 >> (i * W0)) & (((1 << W0) - 1) * 0x10001)
    if W1 > 0:
        v = v | ((w1h >> i) & (4 * 0x10001))
    return v | 0x64006400


@triton.jit
def spread_high(w1):
    """The 1-bit plane of 3-bit codes (16 codes at bits ``0..15`` of an int16 word) with the bits of codes
    ``i`` and ``i + 8`` at bits ``i + 2`` and ``i + 18``: bit 2 of each half of :func:`pair_codes`."""
    u = w1 & 0xFFFF
    return (u | (u << 8)) << 2


@triton.jit
def half2(h):
    """fp16 ``h`` repeated in both halves of an int32 (one f16x2 register)."""
    return (h.to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF) * 0x10001


@triton.jit
def pair_weights(v, s2, b2, ASM: tl.constexpr):
    """``W = (v - 1024) s + b`` (``b = -z s``) on the two fp16 halves of ``v`` (:func:`pair_codes`): one
    HADD2 (exact) and one HFMA2, as the ``(.., 2)`` fp16 tile ``join(low, high)`` (Marlin's dequantization,
    arXiv 2408.11743, with the zero in the FMA). ``ASM``: inline PTX on the GPU, else the same operations
    in fp16 Triton arithmetic (Triton's interpreter has no inline assembly), which rounds the product
    and the sum separately where HFMA2 rounds once (about 1 ulp apart on a third of the weights)."""
    if ASM:
        lo, hi = tl.inline_asm_elementwise(
            "{ .reg .b32 c, t; mov.b32 c, 0x64006400; sub.f16x2 t, $2, c; fma.rn.f16x2 t, t, $3, $4; "
            "mov.b32 {$0, $1}, t; }", "=h,=h,r,r,r", [v, s2, b2], dtype=(tl.float16, tl.float16), is_pure=True,
            pack=1)
    else:
        s = (s2 & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True)
        b = (b2 & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True)
        lo = ((v & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True) - 1024.0) * s + b
        hi = (((v >> 16) & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True) - 1024.0) * s + b
    return tl.join(lo, hi)


@triton.jit
def load_block(Q0, Q1, S, OFF, rows, row_words, n_groups, b0, b_end, GS: tl.constexpr, KB: tl.constexpr,
               WB: tl.constexpr, GPI: tl.constexpr, W1: tl.constexpr):
    """Blocks ``b0 .. b0 + GPI`` (those before ``b_end``) of the program's rows: the code words
    ``(BLOCK_N, GPI, WB)`` of both planes and the fp16 scales and offsets ``(BLOCK_N, GPI)``."""
    blk = b0 + tl.arange(0, GPI)
    ok = blk < b_end
    wcol = blk[:, None] * WB + tl.arange(0, WB)[None, :]
    w0 = load_words(Q0, rows, row_words, wcol, ok)
    w1 = w0
    if W1 > 0:
        w1 = load_words(Q1, rows, row_words, wcol, ok)
    sp = rows[:, None] * n_groups + (blk * KB // GS)[None, :]
    return (w0, w1, tl.load(S + sp, mask=ok[None, :], other=0.0), tl.load(OFF + sp, mask=ok[None, :], other=0.0))


@triton.jit
def unpack2(v, DT: tl.constexpr, ASM: tl.constexpr):
    """The two 16-bit halves of int32 ``v`` as ``DT`` (fp16 or bf16) tiles ``(low, high)``; bf16 in
    Triton's interpreter (``ASM`` false) as exact fp32 tiles (see :func:`bits16`)."""
    if DT == tl.bfloat16 and not ASM:
        return (v << 16).to(tl.float32, bitcast=True), (v & -65536).to(tl.float32, bitcast=True)
    lo = (v & 0xFFFF).to(tl.int16).to(DT, bitcast=True)
    hi = ((v >> 16) & 0xFFFF).to(tl.int16).to(DT, bitcast=True)
    return lo, hi


@triton.jit
def bits16(h, ASM: tl.constexpr):
    """The 16 bits of fp16 or bf16 tile ``h`` in an int32 (``0 .. 65535``). Triton's interpreter (``ASM``
    false) holds bf16 results in fp32, so there they are rounded to nearest even from the fp32 bits."""
    if (h.dtype == tl.bfloat16 or h.dtype == tl.float32) and not ASM:
        b = h.to(tl.float32).to(tl.int32, bitcast=True)
        return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) & 0xFFFF
    return h.to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF


@triton.jit
def pack2(lo, hi, ASM: tl.constexpr):
    """16-bit float tiles ``lo, hi`` as the halves of one int32 (an f16x2 or bf16x2 register)."""
    return bits16(lo, ASM) | (bits16(hi, ASM) << 16)


@triton.jit
def splat2(value: tl.constexpr, DT: tl.constexpr):
    """The constant ``value`` rounded to ``DT`` in both halves of an int32 (folded at compile time)."""
    h = tl.full((1,), value, DT)
    return pack2(h, h, True)


@triton.jit
def pair_bits(w0, w8, w1h, i: tl.constexpr, W0: tl.constexpr, W1: tl.constexpr, IN_PLACE: tl.constexpr,
              MAGIC2: tl.constexpr):
    """Codes ``i`` and ``i + PER / 2`` of each word (bits ``i W0`` and ``i W0 + 16`` of a ``W0``-bit plane
    word) as the halves of an f16x2 (bf16x2) register ``M + q 2^E`` with ``M`` = 1024 (128), ``MAGIC2``
    its bits: the code bits masked where they lie ``E`` bits above a shift of the word by ``i W0 - E``
    (``w8 = w0 >> 8``: shifts of 0 and 8 cover every position of fp16 codes, one shift a word) and or-ed
    into the exponent of ``M`` (one LOP3; exact while ``E + W0`` fits the mantissa). 3-bit codes (``E =
    0``) or in their high bits from ``w1h`` (:func:`spread_high`). ``IN_PLACE``: ``E = i W0 mod 8``
    (fp16 codes without a high plane: ``E + W0 <= 8`` fits its 10 mantissa bits), else ``E = 0``
    (bf16's 7 bits, 3-bit codes)."""
    E: tl.constexpr = (i * W0) % 8 if IN_PLACE else 0
    SH: tl.constexpr = i * W0 - E
    if SH == 0:
        src = w0
    elif SH == 8:
        src = w8
    else:
        src = w0 >> SH
    v = src & ((((1 << W0) - 1) << E) * 0x10001)
    if W1 > 0:
        v = v | ((w1h >> i) & (4 * 0x10001))
    return v | MAGIC2


@triton.jit
def pair_dot(p2, v, x2, i: tl.constexpr, W0: tl.constexpr, IN_PLACE: tl.constexpr, C: tl.constexpr,
             DT: tl.constexpr, ASM: tl.constexpr):
    """``p2 + (v a + c) x2`` on the two halves of each int32 (f16x2, or bf16x2 for ``DT`` bf16): with
    ``v = M + q 2^E`` (:func:`pair_bits`), ``a = 2^-E`` and ``c = -(M 2^-E + C)``, ``v a + c = q - C``
    exactly (the centred code, one HFMA2), times the pair of activations into the partial sums (one
    HFMA2, rounded to ``DT``). ``ASM``: inline PTX on the GPU, else the same operations in Triton
    arithmetic (Triton's interpreter has no inline assembly), which rounds the product and the sum
    separately where HFMA2 rounds once."""
    E: tl.constexpr = (i * W0) % 8 if IN_PLACE else 0
    M: tl.constexpr = 128.0 if DT == tl.bfloat16 else 1024.0
    a2 = splat2(1.0 / (1 << E), DT)
    c2 = splat2(-(M / (1 << E) + C), DT)
    if ASM:
        T: tl.constexpr = "bf16x2" if DT == tl.bfloat16 else "f16x2"
        return tl.inline_asm_elementwise("{ .reg .b32 t; fma.rn." + T + " t, $1, $3, $4; fma.rn." + T +
                                         " $0, t, $2, $5; }", "=r,r,r,r,r,r", [v, x2, a2, c2, p2],
                                         dtype=tl.int32, is_pure=True, pack=1)
    vl, vh = unpack2(v, DT, ASM)
    xl, xh = unpack2(x2, DT, ASM)
    al, _ = unpack2(a2, DT, ASM)
    cl, _ = unpack2(c2, DT, ASM)
    pl, ph = unpack2(p2, DT, ASM)
    return pack2((vl * al + cl) * xl + pl, (vh * al + cl) * xh + ph, ASM)


@triton.jit
def add2(a2, b2, DT: tl.constexpr, ASM: tl.constexpr):
    """``a2 + b2`` on the two halves of each int32 (one HADD2; ``DT`` as in :func:`pair_dot`)."""
    if ASM:
        T: tl.constexpr = "bf16x2" if DT == tl.bfloat16 else "f16x2"
        return tl.inline_asm_elementwise("add.rn." + T + " $0, $1, $2;", "=r,r,r", [a2, b2], dtype=tl.int32,
                                         is_pure=True, pack=1)
    al, ah = unpack2(a2, DT, ASM)
    bl, bh = unpack2(b2, DT, ASM)
    return pack2(al + bl, ah + bh, ASM)


@triton.jit
def sum2(v2, DT: tl.constexpr, ASM: tl.constexpr):
    """``low + high`` of each int32's two ``DT`` halves, in fp32 (two conversions and one FADD)."""
    lo, hi = unpack2(v2, DT, ASM)
    return lo.to(tl.float32) + hi.to(tl.float32)


@triton.jit
def gemv_block(acc, X, PERM, w0, w1, sh, bh, b0, b_end, KB: tl.constexpr, PER: tl.constexpr, W0: tl.constexpr,
               W1: tl.constexpr, HAS_PERM: tl.constexpr, GPI: tl.constexpr, ASM: tl.constexpr):
    """``acc (BLOCK_N, GPI, WB) += s sum_i (q_i - C) x_i + (b + C s) sum_i x_i`` for blocks ``b0 .. b0 + GPI``
    of words ``w0, w1`` and scales and offsets ``sh, bh`` (:func:`load_block`), with ``C = 2^(bits - 1)``
    (centred codes keep the fp16 partial sums and ``b + C s`` small). Per pair of codes of a word one
    LOP3 and two HFMA2 (:func:`pair_bits`, :func:`pair_dot`: both codes with their pair of activations,
    ``x[k]`` and ``x[k + PER WB / 2]``, packed into one register once for a thread's rows); per word one
    shift, the fp16 partial sum to fp32 (:func:`sum2`) and two FFMA. Blocks past ``b_end`` (whose codes,
    scales and offsets loaded as 0) read the last block's activations: unmasked loads, and 0 times a
    finite activation."""
    WB: tl.constexpr = KB // PER
    HALF: tl.constexpr = PER // 2
    DT: tl.constexpr = X.dtype.element_ty
    BF16: tl.constexpr = DT == tl.bfloat16
    IN_PLACE: tl.constexpr = W1 == 0 and not BF16
    MAGIC2: tl.constexpr = 0x43004300 if BF16 else 0x64006400
    C: tl.constexpr = 1 << (W0 + W1 - 1)
    FLUSH: tl.constexpr = 4
    blk = tl.minimum(b0 + tl.arange(0, GPI), b_end - 1)
    k = blk[:, None] * KB + tl.arange(0, WB)[None, :]
    w8 = w0 >> 8
    w1h = w1
    if W1 > 0:
        w1h = spread_high(w1)
    p = tl.zeros(w0.shape, dtype=tl.float32)
    for i in tl.static_range(HALF):
        if i % FLUSH == 0:
            p2 = tl.zeros(w0.shape, dtype=tl.int32)
        kl = k + i * WB
        kh = kl + HALF * WB
        if HAS_PERM:
            kl = tl.load(PERM + kl)
            kh = tl.load(PERM + kh)
        x2 = pack2(tl.load(X + kl), tl.load(X + kh), ASM)[None, :, :]
        p2 = pair_dot(p2, pair_bits(w0, w8, w1h, i, W0, W1, IN_PLACE, MAGIC2), x2, i, W0, IN_PLACE, C, DT, ASM)
        if i % FLUSH == FLUSH - 1 or i == HALF - 1:
            p += sum2(p2, DT, ASM)
        if i == 0:
            xs2 = x2
        else:
            xs2 = add2(xs2, x2, DT, ASM)
    s = sh.to(tl.float32)[:, :, None]
    return acc + p * s + (bh.to(tl.float32)[:, :, None] + C * s) * sum2(xs2, DT, ASM)


@triton.jit
def gemv_loop(X, Q0, Q1, S, OFF, PERM, rows, row_words, n_groups, b_start, b_end,
              GS: tl.constexpr, KB: tl.constexpr, PER: tl.constexpr, W0: tl.constexpr, W1: tl.constexpr,
              HAS_PERM: tl.constexpr, BLOCK_N: tl.constexpr, GPI: tl.constexpr, PREFETCH: tl.constexpr,
              ASM: tl.constexpr):
    """The ``(1, BLOCK_N)`` fp32 GEMV over blocks ``b_start .. b_end`` on the CUDA cores
    (:func:`gemv_block` per ``GPI`` blocks), reduced over K once. ``PREFETCH``
    (:func:`lowbit.kernels.triton.common.loads_ahead`): each iteration's words and scales are loaded one
    step ahead into two register buffers used in turn (the loop unrolled by two), so that no loaded
    register is copied at the loop's end, which would wait for its load."""
    WB: tl.constexpr = KB // PER
    acc = tl.zeros((BLOCK_N, GPI, WB), dtype=tl.float32)
    if PREFETCH:
        a0, a1, as_, ab = load_block(Q0, Q1, S, OFF, rows, row_words, n_groups, b_start, b_end, GS, KB, WB, GPI, W1)
        for b0 in range(b_start, b_end, 2 * GPI):
            c0, c1, cs, cb = load_block(Q0, Q1, S, OFF, rows, row_words, n_groups, b0 + GPI, b_end, GS, KB, WB,
                                        GPI, W1)
            acc = gemv_block(acc, X, PERM, a0, a1, as_, ab, b0, b_end, KB, PER, W0, W1, HAS_PERM, GPI, ASM)
            a0, a1, as_, ab = load_block(Q0, Q1, S, OFF, rows, row_words, n_groups, b0 + 2 * GPI, b_end, GS, KB,
                                         WB, GPI, W1)
            if b0 + GPI < b_end:
                acc = gemv_block(acc, X, PERM, c0, c1, cs, cb, b0 + GPI, b_end, KB, PER, W0, W1, HAS_PERM,
                                 GPI, ASM)
    else:
        for b0 in range(b_start, b_end, GPI):
            w0, w1, sh, bh = load_block(Q0, Q1, S, OFF, rows, row_words, n_groups, b0, b_end, GS, KB, WB, GPI, W1)
            acc = gemv_block(acc, X, PERM, w0, w1, sh, bh, b0, b_end, KB, PER, W0, W1, HAS_PERM, GPI, ASM)
    return tl.sum(tl.sum(acc, axis=2), axis=1)[None, :]


@triton.jit
def dot_loop(X, Q0, Q1, S, OFF, PERM, rows, offs_m, m_mask, stride_xm, row_words, n_groups, b_start, b_end,
             GS: tl.constexpr, KB: tl.constexpr, PER: tl.constexpr, W0: tl.constexpr, W1: tl.constexpr,
             HAS_PERM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GPI: tl.constexpr,
             ASM: tl.constexpr):
    """The ``(BLOCK_M, BLOCK_N)`` fp32 tile over blocks ``b_start .. b_end`` on the tensor cores with the
    operands swapped, ``Y^T = W_hat X^T``: the dequantized weights are the register operand (``A``,
    ``BLOCK_N`` rows: a 64-row wgmma on Hopper) and only the activation tile goes through shared memory;
    per pair of codes one shift, one LOP3, one HADD2 and one HFMA2 (:func:`pair_codes`,
    :func:`pair_weights`)."""
    WB: tl.constexpr = KB // PER
    HALF: tl.constexpr = PER // 2
    gi = tl.arange(0, GPI)
    j = tl.arange(0, WB)
    pair = (tl.arange(0, 2) * HALF * WB)[None, None, :]  # input offsets of the two codes of a pair
    acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)  # Y^T
    for b0 in range(b_start, b_end, GPI):
        blk = b0 + gi
        ok = blk < b_end
        w0, w1, s, b = load_block(Q0, Q1, S, OFF, rows, row_words, n_groups, b0, b_end, GS, KB, WB, GPI, W1)
        s2 = half2(s)[:, :, None]
        b2 = half2(b)[:, :, None]
        if W1 > 0:
            w1 = spread_high(w1)
        k = blk[:, None] * KB + j[None, :]
        for i in tl.static_range(HALF):
            a = pair_weights(pair_codes(w0, w1, i, W0, W1), s2, b2, ASM)  # (BLOCK_N, GPI, WB, 2)
            kp = k[:, :, None] + i * WB + pair  # (GPI, WB, 2)
            if HAS_PERM:
                kp = tl.load(PERM + kp, mask=ok[:, None, None], other=0)
            xt = tl.load(X + kp[:, :, :, None] + offs_m[None, None, None, :] * stride_xm,
                         mask=ok[:, None, None, None] & m_mask[None, None, None, :], other=0.0)
            acc = tl.dot(tl.reshape(a, (BLOCK_N, GPI * WB * 2)).to(xt.dtype),
                         tl.reshape(xt, (GPI * WB * 2, BLOCK_M)), acc)
    return tl.trans(acc)


@triton.jit
def uniform_kernel(X, Y, Q0, Q1, S, OFF, PERM, PTR, OROW, OCOL, OVAL, M, N, K, stride_xm, row_words,
                   GS: tl.constexpr, KB: tl.constexpr, PER: tl.constexpr, W0: tl.constexpr, W1: tl.constexpr,
                   HAS_PERM: tl.constexpr, HAS_OUT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                   GPI: tl.constexpr, SPLIT: tl.constexpr, SPLIT_BLOCKS, OUT_CHUNK: tl.constexpr, ASM: tl.constexpr,
                   PREFETCH: tl.constexpr):
    """``Y[m, n] = sum_k X[m, perm(k)] (s[n, g] q[n, k] + b[n, g])`` (``g = k // GS``, ``b = -z s``) for
    ``BLOCK_N`` rows over blocks ``pid_k SPLIT_BLOCKS ..`` of ``KB`` inputs (all of K without split),
    ``GPI`` blocks per iteration (see :mod:`lowbit.kernels.triton.common`): :func:`gemv_loop` for one
    activation row (``BLOCK_M == 1``), :func:`dot_loop` for batches; then the outliers and the store.
    ``row_words = K / PER`` is an argument so that Triton sees its divisibility by 16 and vectorizes the
    loads of words and activations."""
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    pid_k = tl.program_id(2)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rows = tl.minimum(offs_n, N - 1)  # loads unmasked along rows; the store masks
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = offs_m < M
    b_start = pid_k * SPLIT_BLOCKS
    b_end = tl.minimum(b_start + SPLIT_BLOCKS, K // KB)
    if HAS_OUT:  # the outlier walk's first loads, before the main loop
        o_first, o_end, o_r, o_d, o_x = outliers_begin(X, stride_xm, offs_m, m_mask, offs_n, N, PTR, OROW, OCOL, OVAL,
                                                       pid_k, BLOCK_N, OUT_CHUNK, SPLIT)
    if BLOCK_M == 1:
        acc = gemv_loop(X, Q0, Q1, S, OFF, PERM, rows, row_words, K // GS, b_start, b_end, GS, KB, PER, W0,
                        W1, HAS_PERM, BLOCK_N, GPI, PREFETCH, ASM)
    else:
        acc = dot_loop(X, Q0, Q1, S, OFF, PERM, rows, offs_m, m_mask, stride_xm, row_words, K // GS, b_start, b_end,
                       GS, KB, PER, W0, W1, HAS_PERM, BLOCK_M, BLOCK_N, GPI, ASM)
    if HAS_OUT:
        acc = outliers_end(acc, o_first, o_end, o_r, o_d, o_x, X, stride_xm, offs_m, m_mask, offs_n, OROW, OCOL, OVAL,
                           BLOCK_M, OUT_CHUNK, SPLIT)
    store_y(Y, acc, offs_m, m_mask, offs_n, N, SPLIT)


def _launch(st: UniformState, x: Tensor, c: Config) -> Tensor:
    m, (n, k) = x.shape[0], st.shape
    bm = block_m(m)
    per = PER[st.bits]
    planes = PLANES[st.bits]
    n_blocks = k // st.block
    gpi = blocks_per_iter(c, per, st.block, triton.cdiv(n_blocks, c.split_k), bm)
    y = output(m, n, c, x)
    grid = (triton.cdiv(n, c.block_n), triton.cdiv(m, bm), c.split_k)
    uniform_kernel[grid](
        x, y, st.planes[0], st.planes[-1], st.scales, st.offsets, st.perm if st.perm is not None else st.scales,
        *outlier_args(st.outliers, y), m, n, k, x.stride(0), k // per,
        GS=st.group_size, KB=st.block, PER=per, W0=planes[0], W1=planes[1] if len(planes) > 1 else 0,
        HAS_PERM=st.perm is not None, HAS_OUT=st.outliers is not None, BLOCK_M=bm, BLOCK_N=c.block_n,
        GPI=gpi, SPLIT=c.split_k, SPLIT_BLOCKS=split_blocks(n_blocks, gpi, c.split_k),
        OUT_CHUNK=out_chunk(c.block_n, st.outliers), ASM=x.is_cuda, PREFETCH=loads_ahead(c, bm),
        num_warps=c.num_warps, num_stages=c.num_stages)
    return y


def tuning(st: UniformState, xa: Tensor) -> tuple[tuple, list[Config]]:
    """The tuning key of ``st`` for activations ``xa`` and the configurations tried."""
    return (("uniform", *st.shape, st.bits, st.group_size, st.perm is not None, st.outliers is not None,
             block_m(xa.shape[0]), xa.dtype), candidates(xa.shape[0], tensor_core=True))


def run(st: UniformState, x: Tensor, config: Config | None = None) -> Tensor:
    """``x @ W_hat^T`` (:func:`lowbit.kernels.triton.common.run_tuned`); ``config`` forces a launch
    configuration (tests, the benchmark's sweep)."""
    return run_tuned(st, x, tuning, _launch, config)
