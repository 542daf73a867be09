"""Uniform 1..4-bit weights with group scales and zeros: ``y = x @ W_hat^T`` in one Triton launch.

``W_hat[n, k] = s[g(k), n] (q[k, n] - z[g(k), n])`` with ``g(k) = k // group_size`` (the ``uniform``
format of :mod:`lowbit.core.formats`; GPTQ, arXiv 2210.17323; SpQR's second-order statistics are
dequantized once at prepare). Layout built once by :func:`prepare`:

- codes in the block-interleaved K-contiguous layout, paired (:func:`lowbit.kernels.triton.common.pack_codes`,
  blocks of ``KB = gcd(g, 128)`` inputs): the codes at bits ``i W`` and ``i W + 16`` of word ``j`` are
  inputs ``2 WB i + 2 j`` and ``2 WB i + 2 j + 1`` of their block (since v12; before, ``WB i + j`` and
  ``WB (i + PER / 2) + j``);
- scales ``s`` and offsets ``b = -z s`` ``(d_out, d_in / g)`` fp16 (``W_hat = s q + b``), both in one int32 word
  (:func:`lowbit.kernels.triton.common.pack_scales`, since v18), loaded once per block and row as a ``(BLOCK_N,
  GPI)`` tile and broadcast over the block's codes;
- act-order (``g_idx``, GPTQ's ``desc_act``): columns permuted once so that groups are contiguous
  (each group must hold exactly ``group_size`` columns, as GPTQ produces), and the kernel reads
  ``x[perm[k]]`` (a gather on the small activation vector, no extra launch);
- sparse outliers in the same pass (:func:`lowbit.kernels.triton.common.outliers_begin`,
  :func:`~lowbit.kernels.triton.common.outliers_end`), with a copy of the entries in column order inside
  tiles of 64 rows for programs of 64 or 128 rows (``Outliers.by_col``, since v14).
- binary codes (BCQ, GPTQT's format) as ``b`` one-bit planes with a scale each (:func:`prepare_binary`,
  ``rep = b`` kernel blocks per block of inputs; since v13, before in a kernel of their own).

Two paths (``benchmarks/kernel_sass.py`` counts their compiled loops, ``docs/results/kernels/sass_v5.json``):

- GEMV on the CUDA cores (one activation row, :func:`gemv_loop`): per code one LOP3 (the code's bits masked
  in one of three shifted copies of its word and or-ed into the mantissa of a power of two ``B``,
  :func:`biased_code`) and one FFMA into ``sum (B + q) x``; per input (shared by a thread's rows) one conversion,
  one FADD (``sum x``) and one FFMA (``sum B x``), the inputs loaded in adjacent pairs (:func:`pair_inputs`); per
  word position of a block ``s (sum (B + q) x - sum B x) + b sum x``; the accumulator is reduced over K once.
  Since v18; before, each code's ``B`` was subtracted by one FADD (:func:`code_value`, which 3-bit codes' high
  bit still takes), and the offline loop at the H100's 4-bit configuration went from 675 to 606 instructions
  (docs/results.md, v18). Before v16, 5.3 instructions per 4-bit code
  and 4.7-4.9 per 2-bit code at two rows per thread (v5; v4, which multiplied each activation
  by the power of two instead: 6.2 and 5.4-5.5), 4.3-4.7 and 3.8-4.2 at more rows per thread. The loop's
  instruction count does not set the time alone: a variant with the activations' side precomputed by a
  second launch (4.4 per 4-bit code) ran its main kernel no faster than v4 on the H100 (docs/results.md,
  "v5").
  On sm_90 the GEMV's configurations with ``tma`` take each iteration's words as boxes copied by the tensor
  memory accelerator into shared memory, several in flight (:func:`word_boxes`; since v16: on the H100 the
  4-bit GEMV went from 7.41 / 15.30 / 15.80 µs to 6.55 / 13.26 / 13.58 at 4096² / 4096x11008 / 11008x4096,
  torch's int4 kernel 6.82 / 14.68 / 14.57 in the same run; docs/results.md). The batches' tiles can take
  their words from the same boxes (every batch-16 key of the H100's file chose that, v16).
- Tensor cores (batches, :func:`dot_loop`): ``Y^T = W_hat X^T`` with the weights as the register
  operand. Two codes of a word (bits ``i w`` and ``i w + 16``) become one f16x2 register ``1024 + q``
  with one shift and one LOP3, then ``(v - 1024) s + b`` with one HADD2 and one HFMA2 (inline PTX;
  Marlin, arXiv 2408.11743, does the same with the zero subtracted first): 3.5-4.0 instructions per
  code at 64 and 128 rows. The paired layout makes that register two adjacent inputs, as the operand
  needs, and a pair step's activations ``2 WB`` contiguous inputs a block, so Triton copies the
  activation tile into shared memory as the ``wgmma`` reads it; with the inputs of a pair ``PER / 2``
  words apart (v11) each step re-laid the tile out through registers and shared memory, with two
  barriers. A batch of one padded to 16 rows this way was slower than the GEMV on the H100 at every
  benchmark shape (docs/results.md), so a batch of one stays on the GEMV.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor
from triton.tools.tensor_descriptor import TensorDescriptor

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
    halves,
    load_words,
    loads_ahead,
    max_shared,
    out_chunk,
    outlier_args,
    outliers_begin,
    outliers_end,
    output,
    pack_codes,
    pack_scales,
    run_tuned,
    split_blocks,
    store_y,
    tma_words,
)


@dataclass
class UniformState:
    """The kernel layout of one uniform weight (see the module docstring)."""

    planes: list[Tensor]  # (d_out, d_in / PER) int32 [, (d_out, d_in / 16) int16 high bits of 3-bit codes]
    sb: Tensor  # (d_out, d_in / g) int32 (columns padded to a multiple of 4): fp16 scale s in bits 0-15, offset
    # b = -z s in bits 16-31 (:func:`lowbit.kernels.triton.common.pack_scales`); binary: (d_out, b d_in / g), a scale
    # per bit plane, the offset c_0 on plane 0, else 0
    perm: Tensor | None  # (d_in,) int32 input column of each kernel column (act-order), or None
    outliers: Outliers | None
    bits: int
    group_size: int
    block: int  # KB
    shape: tuple[int, int]  # (d_out, d_in)
    rep: int = 1  # kernel blocks per block of inputs: 1, or a binary weight's bit planes (:func:`prepare_binary`)
    kind: str = "uniform"  # the stored format, "uniform" or "binary": the tuning key's first part


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


def kernel_columns(qw: QuantizedWeight, device: torch.device) -> tuple[Tensor, Tensor | None]:
    """``qw``'s codes on ``device`` in the kernel's column order (act-order groups made contiguous,
    :func:`group_perm`), and that order as int32 input columns (the kernel reads ``x[perm[k]]``), or None."""
    codes = qw.codes.to(device)
    perm = group_perm(qw)
    if perm is None:
        return codes, None
    perm = perm.to(device)
    return codes[:, perm], perm.to(torch.int32)


def prepare(qw: QuantizedWeight, device: torch.device | str | None = None) -> UniformState:
    """Re-layout a uniform ``qw`` for the kernel (once), on ``device`` (default: where ``qw`` is)."""
    dev = torch.device(device) if device is not None else qw.codes.device
    d_out, d_in = qw.shape
    gs = qw.group_size or d_in
    scales, zeros = qw.group_params()  # (d_out, d_in / g)
    codes, perm = kernel_columns(qw, dev)
    bits, kb = int(qw.bits), block_size(d_in, gs)
    scales, zeros = scales.to(dev), zeros.to(dev)
    return UniformState(pack_codes(codes, bits, kb), pack_scales(scales, -zeros * scales), perm,
                        grid_outliers(qw, dev, by_col=True), bits, gs, kb, (d_out, d_in))


def binary_steps(alphas: Tensor, offsets: Tensor) -> Tensor:
    """``(..., b)`` coefficients and ``(...)`` offsets -> ``(..., b + 1)``: the value of code 0, ``offset -
    sum_i alpha_i``, then the step ``2 alpha`` that each bit of the code adds, least significant bit first
    (bit ``p`` goes with ``alpha_{b-1-p}``, :func:`lowbit.core.formats.binary_code_values`): code ``j``'s
    value is ``steps[0] + sum_p bit_p(j) steps[1 + p]``."""
    return torch.cat([(offsets - alphas.sum(-1))[..., None], 2 * alphas.flip(-1)], -1)


def prepare_binary(qw: QuantizedWeight, device: torch.device | str | None = None) -> UniformState:
    """Re-layout a ``binary`` weight (BCQ; GPTQT, arXiv 2407.02891) as 1-bit uniform codes, once.

    ``W_hat[n, k] = c_0 + sum_p c_{p+1} bit_p(q[n, k])`` (:func:`binary_steps`, per (row, group)) is a sum
    of ``b`` one-bit uniform weights on the same inputs: bit plane ``p`` with scale ``c_{p+1}`` and offset
    ``c_0`` for ``p = 0``, 0 for the others. Each block of ``KB`` inputs becomes ``b`` kernel blocks, bit
    plane ``p`` of input block ``j`` at kernel block ``j b + p`` (``rep = b``): the kernel reads input
    block ``j`` for each, and the scales of kernel block ``j b + p`` at column ``g(j) b + p`` of ``(d_out,
    b d_in / g)``. Each step is rounded once to fp16."""
    dev = torch.device(device) if device is not None else qw.codes.device
    if qw.alphas is None or qw.offsets is None:
        raise ValueError("a binary weight needs its alphas and offsets")
    d_out, d_in = qw.shape
    gs = qw.group_size or d_in
    b = int(qw.bits)
    steps = binary_steps(qw.alphas.to(dev).float(), qw.offsets.to(dev).float())  # (d_out, d_in / g, b + 1)
    codes, perm = kernel_columns(qw, dev)
    kb = block_size(d_in, gs)
    bits = (codes.long()[:, None, :] >> torch.arange(b, device=dev)[None, :, None]) & 1  # (d_out, b, d_in)
    planes = bits.reshape(d_out, b, d_in // kb, kb).transpose(1, 2).reshape(d_out, b * d_in)
    offsets = torch.cat([steps[..., :1], steps.new_zeros(d_out, d_in // gs, b - 1)], -1)
    sb = pack_scales(steps[..., 1:].reshape(d_out, -1), offsets.reshape(d_out, -1))
    return UniformState(pack_codes(planes, 1, kb), sb, perm, grid_outliers(qw, dev, by_col=True), 1, gs, kb,
                        (d_out, d_in), b, "binary")


@triton.jit
def input_block(blk, REP: tl.constexpr):
    """The block of inputs that kernel block ``blk`` reads: ``blk // REP`` (:func:`prepare_binary`)."""
    if REP == 1:
        j = blk
    else:
        j = blk // REP
    return j


@triton.jit
def group_column(blk, KB: tl.constexpr, GS: tl.constexpr, REP: tl.constexpr):
    """The column of kernel block ``blk``'s scale and offset: its group ``blk KB / GS``, or with ``REP``
    bit planes ``g(blk // REP) REP + blk % REP`` (:func:`prepare_binary`)."""
    if REP == 1:
        c = blk * KB // GS
    else:
        c = (blk // REP) * KB // GS * REP + blk % REP
    return c


@triton.jit
def code_value(w, magic, i: tl.constexpr, W: tl.constexpr, S: tl.constexpr):
    """Code ``i`` of a ``W``-bit plane word tile times ``2^S`` as fp32, exactly, with no shift: the high bit of
    3-bit codes (``W = 1``, ``S`` the low plane's width, codes at bits 0-15 of their int16 plane). The code's
    bits, masked in place at bit ``E = i W`` (at most 22: the mantissa), or-ed into the mantissa bits of
    ``2^(23 + D)`` with ``D = S - E`` (one LOP3) give ``2^(23 + D) + q 2^S``, minus ``2^(23 + D)`` (one FADD;
    :func:`biased_code` keeps that power of two instead, for the other planes). ``magic`` is the bits of 2^23,
    a kernel argument, so ``magic + (D << 23)`` is one register per distinct ``D`` set once before the loop and
    the LOP3 takes the mask as its immediate (as two literals the mask costs a MOV per code)."""
    E: tl.constexpr = i * W
    tl.static_assert(E + W <= 23)
    D: tl.constexpr = S - E
    v = w & (((1 << W) - 1) << E)
    return (v | (magic + (D << 23))).to(tl.float32, bitcast=True) - 1.0 * (1 << (23 + D))


@triton.jit
def biased_code(w, wl, wr, magic, i: tl.constexpr, W: tl.constexpr):
    """Code ``i`` of a ``W``-bit plane word tile as fp32 ``B + q`` with its power of two ``B = 2^(23 - E)``
    kept (one LOP3, no shift, no FADD), and ``B`` (a scalar): :func:`code_value`'s value without its subtraction. The
    code's bits are masked at bit ``E = POS + t`` of ``w << t`` (``wl = w << 11``, ``w``, ``wr = w >> 9``;
    ``POS = i W``), the largest ``E`` in ``11 .. 23 - W`` (the mantissa), and or-ed into the bits of ``B 2^23``,
    which gives ``B (1 + q 2^(E - 23)) = B + q`` exactly. The caller sums ``(B + q) x`` and subtracts ``sum B
    x``, which depends on the inputs only and so is shared by a thread's rows. ``B <= 2^12``: fp32 sums of
    8-16 such products keep ``q x`` to about ``2^-9 |x|`` (an output's rounding in fp16 is ``2^-11 |y|``)."""
    POS: tl.constexpr = i * W
    T: tl.constexpr = 11 if POS + 11 <= 23 - W else (0 if POS >= 11 and POS <= 23 - W else -9)
    E: tl.constexpr = POS + T
    D: tl.constexpr = -E
    if T == 11:
        v = wl & (((1 << W) - 1) << E)
    elif T == 0:
        v = w & (((1 << W) - 1) << E)
    else:
        v = wr & (((1 << W) - 1) << E)
    bias = magic + (D << 23)
    return (v | bias).to(tl.float32, bitcast=True), bias.to(tl.float32, bitcast=True)


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
        s, _ = halves(s2, tl.float16)
        b, _ = halves(b2, tl.float16)
        lo, hi = halves(v, tl.float16)
        lo = (lo - 1024.0) * s + b
        hi = (hi - 1024.0) * s + b
    return tl.join(lo, hi)


@triton.jit
def load_block(Q0, Q1, S, rows, row_words, s_stride, b0, b_end, GS: tl.constexpr, KB: tl.constexpr,
               WB: tl.constexpr, GPI: tl.constexpr, W1: tl.constexpr, REP: tl.constexpr):
    """Blocks ``b0 .. b0 + GPI`` (those before ``b_end``) of the program's rows: the code words
    ``(BLOCK_N, GPI, WB)`` of both planes and the fp16 scales and offsets ``(BLOCK_N, GPI)``."""
    blk = b0 + tl.arange(0, GPI)
    ok = blk < b_end
    wcol = blk[:, None] * WB + tl.arange(0, WB)[None, :]
    w0 = load_words(Q0, rows, row_words, wcol, ok)
    w1 = w0
    if W1 > 0:
        w1 = load_words(Q1, rows, row_words, wcol, ok)
    s, b = load_scales(S, rows, s_stride, blk, ok, GS, KB, REP)
    return w0, w1, s, b


@triton.jit
def load_scales(S, rows, s_stride, blk, ok, GS: tl.constexpr, KB: tl.constexpr, REP: tl.constexpr):
    """The fp16 scales and offsets ``(BLOCK_N, GPI)`` of kernel blocks ``blk`` (0 where not ``ok``), from their
    packed words (:func:`lowbit.kernels.triton.common.pack_scales`, rows ``s_stride`` words apart)."""
    sp = rows[:, None] * s_stride + group_column(blk, KB, GS, REP)[None, :]
    return halves(tl.load(S + sp, mask=ok[None, :], other=0), tl.float16)


@triton.jit
def pair_inputs(X, PERM, k2, HAS_PERM: tl.constexpr, ASM: tl.constexpr):
    """Inputs ``2 k2`` and ``2 k2 + 1`` (``X[perm(k)]`` with act-order) as two fp32 ``(1, ..)`` tiles. Without
    ``PERM``, one 32-bit load of the pair (``X`` 4-byte aligned, :func:`_launch`) and, for fp16 on the GPU,
    each half converted in place by inline PTX (two ``cvt.f32.f16``). On the H100 the GEMV ran 4-8% slower
    with Triton's own unpacking of the word (mask, narrow, bitcast) and 15-46% slower with the two halves
    loaded by stride-2 loads (docs/results.md, v12)."""
    if HAS_PERM:
        x0 = tl.load(X + tl.load(PERM + 2 * k2)).to(tl.float32)
        x1 = tl.load(X + tl.load(PERM + 2 * k2 + 1)).to(tl.float32)
    else:
        x01 = tl.load(X.to(tl.pointer_type(tl.int32)) + k2)
        if ASM and X.dtype.element_ty == tl.float16:
            x0, x1 = tl.inline_asm_elementwise(
                "{ .reg .b16 l, h; mov.b32 {l, h}, $2; cvt.f32.f16 $0, l; cvt.f32.f16 $1, h; }", "=r,=r,r", [x01],
                dtype=(tl.float32, tl.float32), is_pure=True, pack=1)
        else:
            x0, x1 = halves(x01, X.dtype.element_ty)
            x0, x1 = x0.to(tl.float32), x1.to(tl.float32)
    return x0[None, :, :], x1[None, :, :]


@triton.jit
def gemv_block(acc, X, PERM, w0, w1, sh, bh, b0, b_end, MAGIC, KB: tl.constexpr, PER: tl.constexpr,
               W0: tl.constexpr, W1: tl.constexpr, HAS_PERM: tl.constexpr, GPI: tl.constexpr, ASM: tl.constexpr,
               REP: tl.constexpr):
    """``acc (BLOCK_N, GPI, WB) += s sum_i q_i x_i + b sum_i x_i`` for blocks ``b0 .. b0 + GPI`` of words
    ``w0, w1`` and scales and offsets ``sh, bh`` (:func:`load_block`): per code one LOP3 (:func:`biased_code`,
    from ``w0``, ``w0 << 11`` or ``w0 >> 9``) and one FFMA into ``p = sum (B + q) x``; per input (shared by a
    thread's rows) one conversion, one FADD into ``sum x`` and one FFMA into ``sum B x``; the high bit of 3-bit
    codes one LOP3, one FADD and one FFMA (:func:`code_value`).
    Blocks past ``b_end`` (whose codes, scales and offsets loaded as 0) read the last block's activations:
    unmasked loads, and 0 times a finite activation."""
    WB: tl.constexpr = KB // PER
    HALF: tl.constexpr = PER // 2
    blk = tl.minimum(b0 + tl.arange(0, GPI), b_end - 1)
    k2 = input_block(blk, REP)[:, None] * (KB // 2) + tl.arange(0, WB)[None, :]  # (GPI, WB): inputs 2 k2, 2 k2 + 1
    wl = w0 << 11
    wr = w0 >> 9
    for i in tl.static_range(HALF):  # codes i and i + HALF of word j: inputs 2 WB i + 2 j and the next
        x0, x1 = pair_inputs(X, PERM, k2 + i * WB, HAS_PERM, ASM)
        f0, c0 = biased_code(w0, wl, wr, MAGIC, i, W0)
        f1, c1 = biased_code(w0, wl, wr, MAGIC, i + HALF, W0)
        if i == 0:
            xsum = x0 + x1
            bsum = c0 * x0
            p = f0 * x0
        else:
            xsum += x0 + x1
            bsum += c0 * x0
            p += f0 * x0
        bsum += c1 * x1
        p += f1 * x1
        if W1 > 0:
            p += code_value(w1, MAGIC, i, W1, W0) * x0
            p += code_value(w1, MAGIC, i + HALF, W1, W0) * x1
    acc = tl.fma(bh.to(tl.float32)[:, :, None], xsum, acc)
    return tl.fma(p - bsum, sh.to(tl.float32)[:, :, None], acc)


@triton.jit
def box_words(QD0, QD1, row0, b0, W1: tl.constexpr):
    """The ``(BLOCK_N, GPI, WB)`` words of both planes at row ``row0`` and block ``b0`` as TMA boxes
    (:func:`word_boxes`; rows and blocks past the end read as 0), as int32."""
    w0 = QD0.load([row0, b0, 0])
    w1 = w0
    if W1 > 0:
        w1 = QD1.load([row0, b0, 0]).to(tl.int32)
    return w0, w1


@triton.jit
def gemv_loop(X, Q0, Q1, QD0, QD1, S, PERM, rows, row0, row_words, s_stride, b_start, b_end, MAGIC,
              GS: tl.constexpr, KB: tl.constexpr, PER: tl.constexpr, W0: tl.constexpr, W1: tl.constexpr,
              HAS_PERM: tl.constexpr, BLOCK_N: tl.constexpr, GPI: tl.constexpr, PREFETCH: tl.constexpr,
              ASM: tl.constexpr, REP: tl.constexpr, TMA: tl.constexpr, STAGES: tl.constexpr):
    """The ``(1, BLOCK_N)`` fp32 GEMV over blocks ``b_start .. b_end`` on the CUDA cores
    (:func:`gemv_block` per ``GPI`` blocks), reduced over K once. ``TMA``: each iteration's words are one
    ``(BLOCK_N, GPI, WB)`` box of each plane (descriptors ``QD0``, ``QD1`` of the planes viewed as ``(N,
    blocks, WB)``; rows and blocks past the end read as 0) copied by the tensor memory accelerator, the loop
    pipelined by Triton over ``STAGES`` shared-memory buffers: a box costs one instruction to issue and its
    wait, and ``STAGES`` of them are in flight, where register loads hold at most two iterations' words (on
    the H100's batch-1 sweep the best 4-bit TMA configuration took 0.86-0.88x the best register one's time,
    docs/results.md, v16). ``PREFETCH``
    (:func:`lowbit.kernels.triton.common.loads_ahead`): each iteration's words and scales are loaded one
    step ahead into two register buffers used in turn (the loop unrolled by two), so that no loaded
    register is copied at the loop's end, which would wait for its load."""
    WB: tl.constexpr = KB // PER
    acc = tl.zeros((BLOCK_N, GPI, WB), dtype=tl.float32)
    if TMA:
        for b0 in tl.range(b_start, b_end, GPI, num_stages=STAGES):
            w0, w1 = box_words(QD0, QD1, row0, b0, W1)
            blk = b0 + tl.arange(0, GPI)
            sh, bh = load_scales(S, rows, s_stride, blk, blk < b_end, GS, KB, REP)
            acc = gemv_block(acc, X, PERM, w0, w1, sh, bh, b0, b_end, MAGIC, KB, PER, W0, W1, HAS_PERM, GPI, ASM,
                             REP)
    elif PREFETCH:
        a0, a1, as_, ab = load_block(Q0, Q1, S, rows, row_words, s_stride, b_start, b_end, GS, KB, WB, GPI, W1,
                                     REP)
        for b0 in range(b_start, b_end, 2 * GPI):
            c0, c1, cs, cb = load_block(Q0, Q1, S, rows, row_words, s_stride, b0 + GPI, b_end, GS, KB, WB,
                                        GPI, W1, REP)
            acc = gemv_block(acc, X, PERM, a0, a1, as_, ab, b0, b_end, MAGIC, KB, PER, W0, W1, HAS_PERM, GPI, ASM,
                             REP)
            a0, a1, as_, ab = load_block(Q0, Q1, S, rows, row_words, s_stride, b0 + 2 * GPI, b_end, GS, KB,
                                         WB, GPI, W1, REP)
            if b0 + GPI < b_end:
                acc = gemv_block(acc, X, PERM, c0, c1, cs, cb, b0 + GPI, b_end, MAGIC, KB, PER, W0, W1, HAS_PERM,
                                 GPI, ASM, REP)
    else:
        for b0 in range(b_start, b_end, GPI):
            w0, w1, sh, bh = load_block(Q0, Q1, S, rows, row_words, s_stride, b0, b_end, GS, KB, WB, GPI, W1,
                                        REP)
            acc = gemv_block(acc, X, PERM, w0, w1, sh, bh, b0, b_end, MAGIC, KB, PER, W0, W1, HAS_PERM, GPI, ASM,
                             REP)
    return tl.sum(tl.sum(acc, axis=2), axis=1)[None, :]


@triton.jit
def dot_loop(X, Q0, Q1, QD0, QD1, S, PERM, rows, row0, offs_m, m_mask, stride_xm, row_words, s_stride, b_start,
             b_end, GS: tl.constexpr, KB: tl.constexpr, PER: tl.constexpr, W0: tl.constexpr, W1: tl.constexpr,
             HAS_PERM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GPI: tl.constexpr,
             ASM: tl.constexpr, REP: tl.constexpr, TMA: tl.constexpr):
    """The ``(BLOCK_M, BLOCK_N)`` fp32 tile over blocks ``b_start .. b_end`` on the tensor cores with the
    operands swapped, ``Y^T = W_hat X^T``: the dequantized weights are the register operand (``A``,
    ``BLOCK_N`` rows: a 64-row wgmma on Hopper) and only the activation tile goes through shared memory;
    per pair of codes one shift, one LOP3, one HADD2 and one HFMA2 (:func:`pair_codes`,
    :func:`pair_weights`)."""
    WB: tl.constexpr = KB // PER
    HALF: tl.constexpr = PER // 2
    r = tl.arange(0, GPI * 2 * WB)  # the tile's inputs: 2 WB contiguous ones per block (paired layout)
    # Y^T, zero, but not a constant Triton can see: from a constant zero it drops the first dot's accumulator
    # input, and LLVM then sets the zeros only on the path that skips the loop, after which ptxas serialized
    # every wgmma of 1- to 3-bit kernels (C7515, "non wgmma instructions defining accumulator registers")
    acc = tl.full((BLOCK_N, BLOCK_M), b_start.to(tl.float32) * 0.0, tl.float32)
    for b0 in range(b_start, b_end, GPI):
        blk = b0 + r // (2 * WB)
        ok = blk < b_end
        if TMA:
            w0, w1 = box_words(QD0, QD1, row0, b0, W1)
            blocks = b0 + tl.arange(0, GPI)
            s, b = load_scales(S, rows, s_stride, blocks, blocks < b_end, GS, KB, REP)
        else:
            w0, w1, s, b = load_block(Q0, Q1, S, rows, row_words, s_stride, b0, b_end, GS, KB, WB, GPI, W1, REP)
        s2 = half2(s)[:, :, None]
        b2 = half2(b)[:, :, None]
        if W1 > 0:
            w1 = spread_high(w1)
        for i in tl.static_range(HALF):
            a = pair_weights(pair_codes(w0, w1, i, W0, W1), s2, b2, ASM)  # (BLOCK_N, GPI, WB, 2)
            kp = input_block(blk, REP) * KB + i * 2 * WB + r % (2 * WB)  # input of a's column g 2 WB + 2 j + h
            if HAS_PERM:
                kp = tl.load(PERM + kp, mask=ok, other=0)
            xt = tl.load(X + kp[:, None] + offs_m[None, :] * stride_xm, mask=ok[:, None] & m_mask[None, :],
                         other=0.0)
            acc = tl.dot(tl.reshape(a, (BLOCK_N, GPI * WB * 2)).to(xt.dtype), xt, acc)
    return tl.trans(acc)


@triton.jit
def main_loop(X, Q0, Q1, QD0, QD1, S, PERM, rows, row0, offs_m, m_mask, stride_xm, row_words, MAGIC, s_stride,
              b_start, b_end, GS: tl.constexpr, KB: tl.constexpr, PER: tl.constexpr, W0: tl.constexpr,
              W1: tl.constexpr, HAS_PERM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
              GPI: tl.constexpr, ASM: tl.constexpr, PREFETCH: tl.constexpr, REP: tl.constexpr, TMA: tl.constexpr,
              STAGES: tl.constexpr):
    """The ``(BLOCK_M, BLOCK_N)`` fp32 sum over blocks ``b_start .. b_end``: :func:`gemv_loop` for one
    activation row (``BLOCK_M == 1``), :func:`dot_loop` for batches."""
    if BLOCK_M == 1:
        acc = gemv_loop(X, Q0, Q1, QD0, QD1, S, PERM, rows, row0, row_words, s_stride, b_start, b_end, MAGIC, GS,
                        KB, PER, W0, W1, HAS_PERM, BLOCK_N, GPI, PREFETCH, ASM, REP, TMA, STAGES)
    else:
        acc = dot_loop(X, Q0, Q1, QD0, QD1, S, PERM, rows, row0, offs_m, m_mask, stride_xm, row_words, s_stride,
                       b_start, b_end, GS, KB, PER, W0, W1, HAS_PERM, BLOCK_M, BLOCK_N, GPI, ASM, REP, TMA)
    return acc


@triton.jit
def uniform_kernel(X, Y, T, Q0, Q1, QD0, QD1, S, PERM, PTR, OROW, OCOL, OVAL, M, N, K, stride_xm, row_words, s_stride,
                   MAGIC, GS: tl.constexpr, KB: tl.constexpr, PER: tl.constexpr, W0: tl.constexpr, W1: tl.constexpr,
                   HAS_PERM: tl.constexpr, HAS_OUT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                   GPI: tl.constexpr, SPLIT: tl.constexpr, SPLIT_BLOCKS, OUT_CHUNK: tl.constexpr, ASM: tl.constexpr,
                   PREFETCH: tl.constexpr, OUT_PROGS: tl.constexpr, REP: tl.constexpr, TMA: tl.constexpr,
                   STAGES: tl.constexpr, TICKETS: tl.constexpr):
    """``Y[m, n] = sum_k X[m, perm(k)] (s[n, g] q[n, k] + b[n, g])`` (``g = k // GS``, ``b = -z s``; with
    ``REP`` bit planes, kernel column ``k`` reads input ``k // (REP KB) KB + k % KB``) for
    ``BLOCK_N`` rows over blocks ``pid_k SPLIT_BLOCKS ..`` of ``KB`` inputs (all of K without split),
    ``GPI`` blocks per iteration (see :mod:`lowbit.kernels.triton.common`; :func:`main_loop`); then the
    outliers and the store. Outliers (``HAS_OUT``) are walked by the ``SPLIT`` programs of a row tile
    around their main loops (``OUT_PROGS == 0``), or by ``OUT_PROGS`` programs of their own (``pid_k >=
    SPLIT``, no main loop), which add into ``y`` as split K does (:func:`outlier_programs`).
    ``row_words`` (``K / PER`` padded to a multiple of 16, :func:`lowbit.kernels.triton.common.pack_codes`)
    is an argument so that Triton sees its divisibility by 16 and vectorizes the loads of words."""
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    pid_k = tl.program_id(2)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rows = tl.minimum(offs_n, N - 1)  # loads unmasked along rows; the store masks
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = offs_m < M
    b_start = pid_k * SPLIT_BLOCKS
    b_end = tl.minimum(b_start + SPLIT_BLOCKS, K // KB)
    if OUT_PROGS > 0:
        if pid_k >= SPLIT:  # an outlier program: chunks pid_k - SPLIT, + OUT_PROGS, .. of the tile's entries
            o_first, o_end, o_r, o_d, o_c = outliers_begin(offs_n, N, PTR, OROW, OCOL, OVAL, pid_k - SPLIT, BLOCK_N,
                                                           OUT_CHUNK, OUT_PROGS)
            acc = outliers_end(tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32), o_first, o_end, o_r, o_d, o_c, X,
                               stride_xm, offs_m, m_mask, offs_n, N, PTR, OROW, OCOL, OVAL, BLOCK_M, OUT_CHUNK,
                               OUT_PROGS)
        else:
            acc = main_loop(X, Q0, Q1, QD0, QD1, S, PERM, rows, pid_n * BLOCK_N, offs_m, m_mask, stride_xm,
                            row_words, MAGIC, s_stride, b_start, b_end, GS, KB, PER, W0, W1, HAS_PERM, BLOCK_M,
                            BLOCK_N, GPI, ASM, PREFETCH, REP, TMA, STAGES)
    else:
        if HAS_OUT:  # the outlier walk's first loads, before the main loop
            o_first, o_end, o_r, o_d, o_c = outliers_begin(offs_n, N, PTR, OROW, OCOL, OVAL, pid_k, BLOCK_N, OUT_CHUNK,
                                                           SPLIT)
        acc = main_loop(X, Q0, Q1, QD0, QD1, S, PERM, rows, pid_n * BLOCK_N, offs_m, m_mask, stride_xm,
                        row_words, MAGIC, s_stride, b_start, b_end, GS, KB, PER, W0, W1, HAS_PERM, BLOCK_M, BLOCK_N,
                        GPI, ASM, PREFETCH, REP, TMA, STAGES)
        if HAS_OUT:
            acc = outliers_end(acc, o_first, o_end, o_r, o_d, o_c, X, stride_xm, offs_m, m_mask, offs_n, N, PTR, OROW,
                               OCOL, OVAL, BLOCK_M, OUT_CHUNK, SPLIT)
    store_y(Y, acc, offs_m, m_mask, offs_n, N, SPLIT + OUT_PROGS, T, TICKETS)


def outlier_programs(st: UniformState, c: Config, bm: int) -> int:
    """Programs per row tile that walk the outliers on their own, one chunk (:func:`out_chunk`) of the
    fullest tile each: for batches (``bm > 1``), whose main programs then hold no chunk through their loop;
    0 (the main programs walk them) for a GEMV or without outliers."""
    if st.outliers is None or bm == 1:
        return 0
    return triton.cdiv(st.outliers.tile_max.get(c.block_n, 1), out_chunk(c.block_n, st.outliers))


def word_tma(st: UniformState, c: Config, x: Tensor) -> bool:
    """Whether a launch at ``c`` takes every plane's words as TMA boxes (:func:`word_boxes`,
    :func:`lowbit.kernels.triton.common.tma_words`; ``WB = KB / PER`` words a box row)."""
    wb = st.block // PER[st.bits]
    return all(tma_words(c, x, p.element_size(), wb) for p in st.planes)


def word_boxes(plane: Tensor, n_blocks: int, wb: int, block_n: int, gpi: int) -> TensorDescriptor:
    """A TMA descriptor of a word plane ``(N, row_words)`` viewed as ``(N, n_blocks, wb)`` (blocks of ``wb``
    words, the row padding past the last block left out), in boxes of ``(block_n, gpi, wb)``: one GEMV
    iteration's words (:func:`gemv_loop`)."""
    return TensorDescriptor(plane, [plane.shape[0], n_blocks, wb], [plane.stride(0), wb, 1], [block_n, gpi, wb])


def word_aligned(x: Tensor) -> Tensor:
    """``x``, or a copy of it where its data does not start on a 4-byte boundary: the GEMV loads pairs of
    inputs as 32-bit words (:func:`pair_inputs`)."""
    return x if x.data_ptr() % 4 == 0 else x.clone()


def _launch(st: UniformState, x: Tensor, c: Config) -> Tensor:
    m, (n, k) = x.shape[0], (st.shape[0], st.shape[1] * st.rep)  # K: the kernel's inputs, rep per input
    bm = block_m(m)
    if bm == 1:
        x = word_aligned(x)
    per = PER[st.bits]
    planes = PLANES[st.bits]
    n_blocks = k // st.block
    gpi = blocks_per_iter(c, per, st.block, triton.cdiv(n_blocks, c.split_k), bm,
                          shared=max_shared(x.device.index) if x.is_cuda else None)
    walkers = outlier_programs(st, c, bm)
    grid = (triton.cdiv(n, c.block_n), triton.cdiv(m, bm), c.split_k + walkers)
    y, words = output(m, n, grid, x, c)
    tma = word_tma(st, c, x)
    boxes = [word_boxes(p, n_blocks, st.block // per, c.block_n, gpi) for p in st.planes] if tma else st.planes
    uniform_kernel[grid](
        x, y, words, st.planes[0], st.planes[-1], boxes[0], boxes[-1], st.sb, st.perm if st.perm is not None else st.sb,
        *outlier_args(st.outliers, y, c.block_n, bm), m, n, k, x.stride(0), st.planes[0].shape[1], st.sb.stride(0),
        0x4B000000,
        GS=st.group_size, KB=st.block, PER=per, W0=planes[0], W1=planes[1] if len(planes) > 1 else 0,
        HAS_PERM=st.perm is not None, HAS_OUT=st.outliers is not None, BLOCK_M=bm, BLOCK_N=c.block_n,
        GPI=gpi, SPLIT=c.split_k, SPLIT_BLOCKS=split_blocks(n_blocks, gpi, c.split_k),
        OUT_CHUNK=out_chunk(c.block_n, st.outliers), ASM=x.is_cuda, PREFETCH=loads_ahead(c, bm),
        OUT_PROGS=walkers, REP=st.rep, TMA=tma, STAGES=c.num_stages, TICKETS=c.tickets, num_warps=c.num_warps,
        num_stages=1 if tma and bm == 1 else c.num_stages)
    return y.to(x.dtype)


def tuning(st: UniformState, xa: Tensor) -> tuple[tuple, list[Config]]:
    """The tuning key of ``st`` for activations ``xa`` and the configurations tried."""
    return ((st.kind, *st.shape, st.bits * st.rep, st.group_size, st.perm is not None, st.outliers is not None,
             block_m(xa.shape[0]), xa.dtype), candidates(xa.shape[0], tensor_core=True))


def run(st: UniformState, x: Tensor, config: Config | None = None) -> Tensor:
    """``x @ W_hat^T`` (:func:`lowbit.kernels.triton.common.run_tuned`); ``config`` forces a launch
    configuration (tests, the benchmark's sweep)."""
    return run_tuned(st, x, tuning, _launch, config)
