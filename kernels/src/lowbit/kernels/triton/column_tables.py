"""Per-column lookup tables (CLAQ, arXiv 2405.17233; CMPQ; one width or mixed per-column widths), with the
tables in registers: ``W_hat[n, k] = T[k, q[n, k]]``, ``2^b`` fp16 entries per input column ``k``.

**Codes packed along the output rows.** A 32-bit word holds the codes of ``RPW`` consecutive output rows
of one input column (``RPW`` = 8 at 4 bits, 16 at 2 and 3 bits, 32 at 1 bit), so every code of a word
reads the same column's table. Rows come in tiles of :data:`BT`; each tile's words are stored
contiguously, ``(ceil(d_out / BT), k, BT / RPW)`` (rows padded with zero codes), so a program streams one
tile's words along K. Row ``4 g + j`` of a word sits at bit ``s_g + 4 j`` (:func:`row_shift`): the four
codes of a group are the four nibbles of ``w >> s_g``, which is the selector of one PRMT. 3-bit codes keep
their low two bits in such a 2-bit word and the third in an int16 of the same 16 rows (bit ``g + 4 j``).

**Tables as byte planes.** Column ``k``'s entries are stored as their low bytes, then their high bytes
(:func:`table_planes`, ``TW`` int32 a column: 8 at 4 bits, 4 at 3 bits, 2 at 1 and 2 bits, whose tables are padded
to 4 entries), in blocks of :data:`PB` columns, plane-major within a block (:func:`block_planes`). At 4 bits a block
is 32 columns, so that a warp loads one plane word of 32 columns in one coalesced access (in column order the 8
words of a column, 32 bytes apart, are 8 loads of 8 wavefronts each). On the H100
(``docs/results/kernels/ab_planes_h100_v9.json``, best configuration of each layer) blocks made 4-bit batches of 16
12-14% faster and the 4-bit GEMV 1-3%; at 2 and 3 bits they made the 3-bit GEMV 6-14% and 2-bit batches 5-6% slower,
so those widths keep column order. On the GPU (:func:`values`, inline PTX) one ``prmt.b32`` selects the low bytes of
four codes' entries from up to 8 bytes and one their high bytes (16 entries: two each and a third by bit 3 of the
code), two more interleave them into four fp16 and ``cvt.f32.f16`` widens them; no memory access per code (a 2-byte
gather per code, the lookup until session 18, bound the GEMV by the L1 pipe). The compiled sm_90 GEMV loop is
6.8-8.0 instructions a code at 4 bits (6.7-6.8 before the plane blocks) and 4.5-4.6 at 2 bits, loads and FFMA
included (``benchmarks/kernel_sass.py``, Triton 3.6 and 3.9). Under Triton's interpreter (no inline assembly), or on
a GPU that is not NVIDIA's, the same values come from shifts and a gather of the planes.

**GEMV**: a program takes one row tile and ``KR`` columns an iteration (the next iteration's words,
activations and table planes loaded before this one's arithmetic), accumulates ``v x`` in fp32 in a
``(KR, BT / RPW, RPW)`` tile and reduces it over K once. **Batches**: the looked-up ``(KR, BT)`` tile (on
NVIDIA GPUs the fp16 entries as the PRMTs leave them, no widening; in the activations' dtype) goes to
``tl.dot``.
On sm_90 the GEMV's configurations with ``tma`` take a 4-bit segment's words as ``(KR, BT / RPW)`` boxes
copied by the tensor memory accelerator, pipelined over ``num_stages`` buffers (:func:`segment_boxes`; its 16-byte
rows exclude the 1- to 3-bit segments, whose word rows are 4 or 8 bytes; since v16).
``split_k`` programs share a row tile along K and add their partials atomically (into a zero-filled
``y``, or one the first of them stores into with tickets: :func:`lowbit.kernels.triton.common.store_y`).

**Mixed widths in one launch**: the columns of each width form a segment (padded to a multiple of
:data:`PAD` columns: zero codes and tables, activations masked), with their input indices; the segments'
words, high bits and planes are concatenated. Each segment (up to 4) has its own programs, which run its
width's loop and add their partials into ``y`` atomically, as split K does: segments one after another in
one program (until session 19) left each a short loop with its own start and reduction, on one program of a
row tile. Sparse outliers are added by the programs of a row tile in turn (chunks shared as in split K).
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
    Config,
    Outliers,
    block_m,
    compiled_ptx,
    grid_outliers,
    out_chunk,
    outlier_args,
    outliers_begin,
    outliers_end,
    output,
    pad_cols,
    run_tuned,
    signed_bits,
    store_y,
    tma_words,
    with_tickets,
)

BT = 32  # output rows per tile (and per program)
PAD = 32  # columns of a segment are padded to a multiple of this
MAX_SEGMENTS = 4
RPW = {1: 32, 2: 16, 3: 16, 4: 8}  # rows per word
TW = {1: 2, 2: 2, 3: 4, 4: 8}  # int32 table-plane words per column
PB = {1: 1, 2: 1, 3: 1, 4: 32}  # columns per block of the planes (block_planes)
PB4 = tl.constexpr(PB[4])  # the kernel's copy (jit functions read module constants as tl.constexpr)
GROUP_SHIFT = {1: (0, 1, 2, 3, 16, 17, 18, 19), 2: (0, 2, 16, 18), 3: (0, 2, 16, 18), 4: (0, 16)}

# GEMV: long runs of K per program (on the H100 the sweeps chose 128-1024 columns an iteration, 4-16 warps
# and no split K; docs/results.md, v8), 2-way split also tried; 1024 columns on 4 warps, whose accumulator
# alone needs 256 registers a thread, left out. Batches: tl.dot tiles of 32-128 columns, split K up to 4.
GEMV_CONFIGS = [Config(BT, kr, nw, 1, sp) for kr in (256, 512, 128, 1024) for nw in (8, 16, 4) for sp in (1, 2)
                if kr * BT <= 4096 * nw]
DOT_CONFIGS = [Config(BT, kr, nw, 1, sp) for kr in (64, 32, 128) for nw in (4, 8) for sp in (1, 2, 4)]
# GEMVs with the 4-bit segments' words through TMA (sm_90; boxes of at most 256 columns), 2-3 buffers. On the H100
# (docs/results.md, v16) 256 columns on 4 warps took 11.20 / 24.80 / 20.91 µs where the register loads of the same
# tile took 13.15 / 30.33 / 22.72 (4-bit); batches from boxes were 1.1-1.4x slower, so they take none.
GEMV_CONFIGS += [Config(BT, 256, nw, ns, sp, tma=True) for nw in (4, 2, 8) for ns in (3, 2) for sp in (1, 2)]


def row_shift(bits: int, r: int) -> int:
    """Bit of row ``r`` (``< RPW``) of a word: ``GROUP_SHIFT[bits][r // 4] + 4 (r % 4)``."""
    return GROUP_SHIFT[bits][r // 4] + 4 * (r % 4)


def _words(fields: Tensor, width: int, shifts: list[int], dtype: torch.dtype) -> Tensor:
    """``(..., R)`` fields of ``width`` bits -> ``(...)`` words with field ``r`` at bit ``shifts[r]``."""
    w = torch.zeros(fields.shape[:-1], dtype=torch.int64, device=fields.device)
    for r, s in enumerate(shifts):
        w |= (fields[..., r] & ((1 << width) - 1)) << s
    return signed_bits(w, 32 if dtype == torch.int32 else 16, dtype)


def pack_rows(codes: Tensor, bits: int) -> tuple[Tensor, Tensor | None]:
    """``(N, K)`` codes (``N`` a multiple of :data:`BT`) -> words ``(N / BT, K, BT / RPW)`` int32 and, for
    3 bits, the high bits ``(N / BT, K, BT / 16)`` int16 (module docstring)."""
    n, k = codes.shape
    rpw = RPW[bits]
    c = codes.to(torch.int64).reshape(n // BT, BT // rpw, rpw, k).permute(0, 3, 1, 2)  # [tile, k, word, r]
    low = 2 if bits == 3 else bits
    words = _words(c, low, [row_shift(bits, r) for r in range(rpw)], torch.int32).contiguous()
    if bits != 3:
        return words, None
    high = _words(c >> 2, 1, [r // 4 + 4 * (r % 4) for r in range(rpw)], torch.int16).contiguous()
    return words, high


def table_planes(tables: Tensor, bits: int) -> Tensor:
    """``(K, >= 1)`` fp16 tables -> ``(K, TW)`` int32: the low bytes of entries ``0 .. E - 1``, then their high
    bytes (``E = max(4, 2^bits)``; entries a ``bits``-bit code cannot select are dropped, missing ones zero)."""
    e = max(4, 1 << bits)
    t = pad_cols(tables[:, :1 << bits].to(torch.float16), e).contiguous().view(torch.int16).to(torch.int32) & 0xFFFF
    return torch.cat([t & 0xFF, t >> 8], 1).to(torch.uint8).contiguous().view(torch.int32)


def block_planes(planes: Tensor, pb: int) -> Tensor:
    """``(K, TW)`` planes (``K`` a multiple of ``pb``) -> ``(K / pb, TW, pb)``: word ``i`` of column ``k`` at
    ``(k // pb) TW pb + i pb + k % pb`` (``pb`` = 1: column order)."""
    k, tw = planes.shape
    return planes.reshape(k // pb, pb, tw).transpose(1, 2).contiguous()


@dataclass
class Segment:
    """Columns of one width: where they are in the concatenated tensors of :class:`ColumnTableState`."""

    bits: int
    word_offset: int  # first word of the segment in ``words`` (its tiles follow one another)
    col_offset: int  # first kernel column of the segment (in ``cols``)
    plane_offset: int  # first int32 of the segment's planes in ``planes``
    k: int  # columns in the segment (before padding)
    k_pad: int


@dataclass
class ColumnTableState:
    """The kernel layout of a ``table`` weight: segments by width, outliers."""

    words: Tensor  # flat int32: each segment's (N_pad / BT, k_pad, BT / RPW) in turn
    high: Tensor | None  # (N_pad / BT, k_pad_3, BT / 16) int16: the high bits of the 3-bit segment
    planes: Tensor  # flat int32: each segment's (k_pad / PB, TW, PB) table planes in turn (:func:`block_planes`)
    cols: Tensor | None  # (sum_s k_pad_s,) int32 input column of each kernel column, or None (in order)
    segments: list[Segment]
    outliers: Outliers | None
    shape: tuple[int, int]


def prepare(qw: QuantizedWeight, device: torch.device | str | None = None) -> ColumnTableState:
    """Re-layout a ``table`` weight (``(d_out, d_in)`` codes, ``(d_in, >= 1)`` fp16 tables; one width, or
    per-column widths grouped into segments) on ``device``."""
    dev = torch.device(device) if device is not None else qw.codes.device
    if qw.tables is None:
        raise ValueError("a table weight needs its tables")
    d_out, d_in = qw.shape
    codes = qw.codes.to(dev).long()
    codes = torch.cat([codes, codes.new_zeros(triton.cdiv(d_out, BT) * BT - d_out, d_in)])  # rows to whole tiles
    tables = qw.tables.to(dev)
    widths = qw.bits.to(dev).long() if isinstance(qw.bits, Tensor) else torch.full((d_in,), int(qw.bits), device=dev)
    if widths.numel() != d_in or not bool(((widths >= 1) & (widths <= 4)).all()):
        raise ValueError(f"column tables take one width per input column, each of 1 to 4 bits (got {qw.bits})")
    words, planes, cols, segments, high = [], [], [], [], None
    wo = ko = po = 0
    for b in sorted(set(widths.tolist())):
        sel = (widths == b).nonzero().squeeze(1)
        k = sel.numel()
        k_pad = triton.cdiv(k, PAD) * PAD
        w, h = pack_rows(pad_cols(codes[:, sel], k_pad), b)
        high = h if h is not None else high
        words.append(w.reshape(-1))
        planes.append(block_planes(table_planes(pad_cols(tables[sel].T, k_pad).T, b), PB[b]).reshape(-1))
        cols.append(pad_cols(sel[None].int(), k_pad)[0])
        segments.append(Segment(b, wo, ko, po, k, k_pad))
        wo, ko, po = wo + w.numel(), ko + k_pad, po + planes[-1].numel()
    in_order = len(segments) == 1 and segments[0].k == segments[0].k_pad
    return ColumnTableState(torch.cat(words).contiguous(), high, torch.cat(planes).contiguous(),
                            None if in_order else torch.cat(cols).contiguous(), segments, grid_outliers(qw, dev),
                            (d_out, d_in))


# ------------------------------------------------------------------------------------------------- lookup


def _group_asm(bits: int, g: int, out: int, w: str, h: str, t: list[str], half: bool) -> str:
    """PTX of one group of four codes: selector, the low and high bytes of their entries (PRMT), four fp32
    (``half``: four fp16)."""
    s = GROUP_SHIFT[bits][g]
    if bits == 4:
        sel = (f"shr.b32 w, {w}, {s}; and.b32 s, w, 0x7777; shr.b32 c, w, 1; and.b32 c, c, 0x4444; "
               "or.b32 c, c, 0x3210; ")
        look = (f"prmt.b32 a, {t[0]}, {t[1]}, s; prmt.b32 b, {t[2]}, {t[3]}, s; prmt.b32 l, a, b, c; "
                f"prmt.b32 a, {t[4]}, {t[5]}, s; prmt.b32 b, {t[6]}, {t[7]}, s; prmt.b32 h, a, b, c; ")
    else:
        mask = "0x1111" if bits == 1 else "0x3333"
        sel = f"shr.b32 s, {w}, {s}; and.b32 s, s, {mask}; "
        if bits == 3:
            sel += f"shr.b32 c, {h}, {g}; and.b32 c, c, 0x1111; shl.b32 c, c, 2; or.b32 s, s, c; "
        lo, hi = (t[0], t[1]) if bits == 3 else (t[0], t[0])
        hi_a, hi_b = (t[2], t[3]) if bits == 3 else (t[1], t[1])
        look = f"prmt.b32 l, {lo}, {hi}, s; prmt.b32 h, {hi_a}, {hi_b}, s; "
    look += "prmt.b32 p, l, h, 0x5140; prmt.b32 q, l, h, 0x7362; "
    if half:
        return sel + look + f"mov.b32 {{${out}, ${out + 1}}}, p; mov.b32 {{${out + 2}, ${out + 3}}}, q; "
    return (sel + look + "mov.b32 {e0, e1}, p; mov.b32 {e2, e3}, q; "
            f"cvt.f32.f16 ${out}, e0; cvt.f32.f16 ${out + 1}, e1; cvt.f32.f16 ${out + 2}, e2; "
            f"cvt.f32.f16 ${out + 3}, e3; ")


def lookup_asm(bits: int, half: bool = False) -> str:
    """The inline PTX of :func:`values` for ``bits``: outputs ``$0 .. $RPW-1`` (fp32, or with ``half`` the
    fp16 entries themselves; rows of the word in order), then the word, the high bits (3 bits) and the
    ``TW`` plane words."""
    rpw = RPW[bits]
    w = f"${rpw}"
    h = f"${rpw + 1}" if bits == 3 else ""
    t0 = rpw + (2 if bits == 3 else 1)
    t = [f"${t0 + i}" for i in range(TW[bits])]
    body = "".join(_group_asm(bits, g, 4 * g, w, h, t, half) for g in range(rpw // 4))
    return "{ .reg .b32 w, s, c, a, b, l, h, p, q; .reg .b16 e0, e1, e2, e3; " + body + "}"


ASM1 = tl.constexpr(lookup_asm(1))
ASM2 = tl.constexpr(lookup_asm(2))
ASM3 = tl.constexpr(lookup_asm(3))
ASM4 = tl.constexpr(lookup_asm(4))
ASM1H = tl.constexpr(lookup_asm(1, True))
ASM2H = tl.constexpr(lookup_asm(2, True))
ASM3H = tl.constexpr(lookup_asm(3, True))
ASM4H = tl.constexpr(lookup_asm(4, True))


@triton.jit
def tree4(a, b, c, d):
    """Nested joins whose reshape to ``(..., 4)`` puts the ``i``-th argument at ``i``."""
    return tl.join(tl.join(a, c), tl.join(b, d))


@triton.jit
def tree8(v0, v1, v2, v3, v4, v5, v6, v7):
    """As :func:`tree4` for 8 (the even arguments' tree joined with the odd ones', recursively)."""
    return tl.join(tree4(v0, v2, v4, v6), tree4(v1, v3, v5, v7))


@triton.jit
def rows8(v):
    """The values of a word's rows (a tuple, in order, each ``(KR, BNW)``) -> ``(KR, BNW, 8)``."""
    t = tree8(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7])
    return tl.reshape(t, (t.shape[0], t.shape[1], 8))


@triton.jit
def rows16(v):
    """:func:`rows8` for sixteen values."""
    t = tl.join(tree8(v[0], v[2], v[4], v[6], v[8], v[10], v[12], v[14]),
                tree8(v[1], v[3], v[5], v[7], v[9], v[11], v[13], v[15]))
    return tl.reshape(t, (t.shape[0], t.shape[1], 16))


@triton.jit
def rows32(v):
    """:func:`rows8` for thirty-two values."""
    t = tl.join(tl.join(tree8(v[0], v[4], v[8], v[12], v[16], v[20], v[24], v[28]),
                        tree8(v[2], v[6], v[10], v[14], v[18], v[22], v[26], v[30])),
                tl.join(tree8(v[1], v[5], v[9], v[13], v[17], v[21], v[25], v[29]),
                        tree8(v[3], v[7], v[11], v[15], v[19], v[23], v[27], v[31])))
    return tl.reshape(t, (t.shape[0], t.shape[1], 32))


@triton.jit
def values(w, h, t0, t1, t2, t3, t4, t5, t6, t7, TT, pk, ok, B: tl.constexpr, ASM: tl.constexpr,
           HALF: tl.constexpr):
    """``(KR, BNW, RPW)`` entries ``T[k, q]`` of the codes in word tile ``w`` ``(KR, BNW)`` (and high bits
    ``h``, 3 bits), ``t0 .. t7`` the columns' plane words ``(KR, 1)``: fp32, or with ``HALF`` and ``ASM`` the
    fp16 entries themselves (for ``tl.dot``). ``ASM``: inline PTX (PRMT); else (Triton's interpreter) the
    codes by shifts and their entries gathered from the planes at ``TT + pk`` (``pk`` ``(KR, 1, 1)``: each
    column's first plane word, the next ones :data:`PB` apart; ``ok``: the columns there are)."""
    if ASM:
        D = tl.float16 if HALF else tl.float32
        OUT: tl.constexpr = "=h," if HALF else "=f,"
        if B == 4:
            v = rows8(tl.inline_asm_elementwise(ASM4H if HALF else ASM4, OUT * 8 + "r," * 8 + "r",
                                                [w, t0, t1, t2, t3, t4, t5, t6, t7], dtype=(D,) * 8, is_pure=True,
                                                pack=1))
        elif B == 3:
            v = rows16(tl.inline_asm_elementwise(ASM3H if HALF else ASM3, OUT * 16 + "r," * 5 + "r",
                                                 [w, h, t0, t1, t2, t3], dtype=(D,) * 16, is_pure=True, pack=1))
        elif B == 2:
            v = rows16(tl.inline_asm_elementwise(ASM2H if HALF else ASM2, OUT * 16 + "r,r,r", [w, t0, t1],
                                                 dtype=(D,) * 16, is_pure=True, pack=1))
        else:
            v = rows32(tl.inline_asm_elementwise(ASM1H if HALF else ASM1, OUT * 32 + "r,r,r", [w, t0, t1],
                                                 dtype=(D,) * 32, is_pure=True, pack=1))
    else:
        RPW: tl.constexpr = 16 if B == 3 else 32 // B
        r = tl.arange(0, RPW)[None, None, :]
        g = r // 4
        if B == 4:
            gs = g * 16
        elif B == 1:
            gs = (g % 4) + (g // 4) * 16
        else:
            gs = (g % 2) * 2 + (g // 2) * 16
        LOW: tl.constexpr = 2 if B == 3 else B
        q = (w[:, :, None] >> (gs + 4 * (r % 4))) & ((1 << LOW) - 1)
        if B == 3:
            q = q | (((h[:, :, None] >> (g + 4 * (r % 4))) & 1) << 2)
        HI: tl.constexpr = 4 if B == 4 else 2 if B == 3 else 1  # first plane word of the high bytes
        byte = 8 * (q & 3)
        S: tl.constexpr = PB4 if B == 4 else 1
        lo = (tl.load(TT + pk + (q >> 2) * S, mask=ok, other=0) >> byte) & 0xFF
        hi = (tl.load(TT + pk + (HI + (q >> 2)) * S, mask=ok, other=0) >> byte) & 0xFF
        v = (lo | (hi << 8)).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
    return v


# ------------------------------------------------------------------------------------------------- kernel


@triton.jit
def plane_offsets(po, ks, B: tl.constexpr):
    """Where the first plane word of columns ``ks`` ``(KR,)`` is (:func:`block_planes`; word ``i`` is ``PB i``
    further)."""
    TWB: tl.constexpr = 8 if B == 4 else 4 if B == 3 else 2
    if B == 4:  # blocks of 32 columns: runs of 32 contiguous offsets (KR a multiple of 32: _launch)
        off = tl.max_contiguous(tl.multiple_of(po + (ks // PB4) * (PB4 * TWB) + ks % PB4, PB4), PB4)
    else:
        off = po + ks * TWB
    return off


@triton.jit
def load_planes(TT, po, ks, ok, B: tl.constexpr):
    """The ``TW`` plane words of columns ``ks`` ``(KR,)`` as ``(KR,)`` int32 tiles ``t0 .. t7`` (unused ones
    zero): each one coalesced load across the columns."""
    TWB: tl.constexpr = 8 if B == 4 else 4 if B == 3 else 2
    S: tl.constexpr = PB4 if B == 4 else 1
    p = TT + plane_offsets(po, ks, B)
    t0 = tl.load(p, mask=ok, other=0)
    t1 = tl.load(p + S, mask=ok, other=0)
    t2 = tl.zeros_like(t0)
    t3 = tl.zeros_like(t0)
    t4 = tl.zeros_like(t0)
    t5 = tl.zeros_like(t0)
    t6 = tl.zeros_like(t0)
    t7 = tl.zeros_like(t0)
    if TWB > 2:
        t2 = tl.load(p + 2 * S, mask=ok, other=0)
        t3 = tl.load(p + 3 * S, mask=ok, other=0)
    if TWB > 4:
        t4 = tl.load(p + 4 * S, mask=ok, other=0)
        t5 = tl.load(p + 5 * S, mask=ok, other=0)
        t6 = tl.load(p + 6 * S, mask=ok, other=0)
        t7 = tl.load(p + 7 * S, mask=ok, other=0)
    return t0, t1, t2, t3, t4, t5, t6, t7


@triton.jit
def load_step(Q, QH, X, stride_xm, offs_m, m_mask, PERM, base, hbase, ks, hi, k_valid, ko, B: tl.constexpr,
              BNW: tl.constexpr, HAS_PERM: tl.constexpr, BLOCK_M: tl.constexpr):
    """One iteration's loads for columns ``ks`` ``(KR,)`` (valid below ``hi``): the ``(KR, BNW)`` words (and
    high bits) and the activations (:func:`load_acts`). ``base``, ``hbase``: the first word of the row tile
    (multiples of 32)."""
    ok = ks < hi
    cols = tl.arange(0, BNW)
    w = tl.load(Q + base + ks[:, None] * BNW + cols[None, :], mask=ok[:, None], other=0)
    h = w
    if B == 3:
        h = tl.load(QH + hbase + ks[:, None] * BNW + cols[None, :], mask=ok[:, None], other=0).to(tl.int32)
    return w, h, load_acts(X, stride_xm, offs_m, m_mask, PERM, ks, hi, k_valid, ko, HAS_PERM, BLOCK_M)


@triton.jit
def load_acts(X, stride_xm, offs_m, m_mask, PERM, ks, hi, k_valid, ko, HAS_PERM: tl.constexpr, BLOCK_M: tl.constexpr):
    """The activations of input ``PERM[ko + k]`` for columns ``ks`` (zero at or past ``hi`` and ``k_valid``):
    ``(KR,)`` for a GEMV, else ``(KR, BLOCK_M)``."""
    kx = ko + ks
    okx = (ks < hi) & (ks < k_valid)
    if HAS_PERM:
        kx = tl.load(PERM + kx, mask=okx, other=0)
    if BLOCK_M == 1:
        x = tl.load(X + kx, mask=okx, other=0.0)
    else:
        x = tl.load(X + offs_m[None, :] * stride_xm + kx[:, None], mask=okx[:, None] & m_mask[None, :], other=0.0)
    return x


@triton.jit
def segment(acc, X, stride_xm, offs_m, m_mask, Q, QH, QD, TT, PERM, tile, part, wo, ko, po, k_pad, k_valid,
            B: tl.constexpr, KR: tl.constexpr, SPLIT: tl.constexpr, HAS_PERM: tl.constexpr,
            BLOCK_M: tl.constexpr, ASM: tl.constexpr, TMA: tl.constexpr, STAGES: tl.constexpr):
    """``acc`` ``(BLOCK_M, BT)`` fp32 plus ``x W_hat^T`` over part ``part`` of ``SPLIT`` of one segment's
    columns for row tile ``tile``. A GEMV sums ``v x`` into a ``(KR, BNW, RPW)`` tile and reduces it over K
    after the loop; batches add each iteration's ``tl.dot`` into ``acc``."""
    RPW: tl.constexpr = 16 if B == 3 else 32 // B
    BNW: tl.constexpr = 32 // RPW  # BT / RPW
    acc3 = tl.zeros((KR, BNW, RPW) if BLOCK_M == 1 else (1, 1, 1), dtype=tl.float32)  # the GEMV's accumulator
    span = tl.cdiv(tl.cdiv(k_pad, SPLIT), KR) * KR
    lo = part * span
    hi = tl.minimum(lo + span, k_pad)
    # segments and tiles start at multiples of 32 words: aligned, the word loads are vectorized (a thread's
    # BNW words of a column in one load), which gives the words the layout of the 1-D activations and planes
    base = tl.multiple_of(wo + tile * k_pad * BNW, 32)
    hbase = tl.multiple_of(tile * k_pad * BNW, 32)
    if TMA:  # 4-bit words as (KR, BNW) boxes of the segment's (tiles k_pad, BNW) words, STAGES in flight
        for k0 in tl.range(lo, hi, KR, num_stages=STAGES):
            kc = k0 + tl.arange(0, KR)
            x = load_acts(X, stride_xm, offs_m, m_mask, PERM, kc, hi, k_valid, ko, HAS_PERM, BLOCK_M)
            w = QD.load([tile * k_pad + k0, 0])
            t0, t1, t2, t3, t4, t5, t6, t7 = load_planes(TT, po, kc, kc < hi, B)
            acc, acc3 = add_values(acc, acc3, w, w, t0, t1, t2, t3, t4, t5, t6, t7, x, TT, po, kc, hi, B, ASM, BLOCK_M)
    else:
        acc, acc3 = segment_loop(acc, acc3, X, stride_xm, offs_m, m_mask, Q, QH, TT, PERM, lo, hi, base, hbase, ko,
                                 po, k_valid, B, KR, BNW, HAS_PERM, BLOCK_M, ASM)
    if BLOCK_M == 1:
        acc += tl.reshape(tl.sum(acc3, axis=0), (1, 32))
    return acc


@triton.jit
def add_values(acc, acc3, w, h, t0, t1, t2, t3, t4, t5, t6, t7, x, TT, po, kc, hi, B: tl.constexpr, ASM: tl.constexpr,
               BLOCK_M: tl.constexpr):
    """One iteration's arithmetic: the entries of words ``w`` (high bits ``h``) for columns ``kc`` times the
    activations ``x``, into ``acc3`` (GEMV) or through ``tl.dot`` into ``acc`` (batches)."""
    v = values(w, h, t0[:, None], t1[:, None], t2[:, None], t3[:, None], t4[:, None], t5[:, None], t6[:, None],
               t7[:, None], TT, plane_offsets(po, kc, B)[:, None, None], (kc < hi)[:, None, None], B, ASM, BLOCK_M > 1)
    if BLOCK_M == 1:
        acc3 += v * x.to(tl.float32)[:, None, None]
    else:
        acc = tl.dot(tl.trans(x), tl.reshape(v, (kc.shape[0], 32)).to(x.dtype), acc)
    return acc, acc3


@triton.jit
def segment_loop(acc, acc3, X, stride_xm, offs_m, m_mask, Q, QH, TT, PERM, lo, hi, base, hbase, ko, po, k_valid,
                 B: tl.constexpr, KR: tl.constexpr, BNW: tl.constexpr, HAS_PERM: tl.constexpr, BLOCK_M: tl.constexpr,
                 ASM: tl.constexpr):
    """:func:`segment`'s loop with register loads, the next iteration's issued before this one's arithmetic."""
    ks = lo + tl.arange(0, KR)
    wn, hn, xn = load_step(Q, QH, X, stride_xm, offs_m, m_mask, PERM, base, hbase, ks, hi, k_valid, ko, B, BNW,
                           HAS_PERM, BLOCK_M)
    tn0, tn1, tn2, tn3, tn4, tn5, tn6, tn7 = load_planes(TT, po, ks, ks < hi, B)
    for k0 in range(lo, hi, KR):
        w, h, x = wn, hn, xn
        t0, t1, t2, t3, t4, t5, t6, t7 = tn0, tn1, tn2, tn3, tn4, tn5, tn6, tn7
        kn = k0 + KR + tl.arange(0, KR)
        wn, hn, xn = load_step(Q, QH, X, stride_xm, offs_m, m_mask, PERM, base, hbase, kn, hi, k_valid, ko, B, BNW,
                               HAS_PERM, BLOCK_M)
        tn0, tn1, tn2, tn3, tn4, tn5, tn6, tn7 = load_planes(TT, po, kn, kn < hi, B)
        acc, acc3 = add_values(acc, acc3, w, h, t0, t1, t2, t3, t4, t5, t6, t7, x, TT, po, k0 + tl.arange(0, KR), hi, B,
                               ASM, BLOCK_M)
    return acc, acc3


@triton.jit
def column_table_kernel(X, Y, T, Q, QH, QD0, QD1, QD2, QD3, TT, PERM, PTR, OROW, OCOL, OVAL, M, N, stride_xm,
                        WO0, KO0, PO0, KP0, KV0, WO1, KO1, PO1, KP1, KV1, WO2, KO2, PO2, KP2, KV2,
                        WO3, KO3, PO3, KP3, KV3,
                        B0: tl.constexpr, B1: tl.constexpr, B2: tl.constexpr, B3: tl.constexpr,
                        KR: tl.constexpr, SPLIT: tl.constexpr, PARTS: tl.constexpr, HAS_PERM: tl.constexpr,
                        HAS_OUT: tl.constexpr, BLOCK_M: tl.constexpr, OUT_CHUNK: tl.constexpr, ASM: tl.constexpr,
                        TMA: tl.constexpr, STAGES: tl.constexpr, TICKETS: tl.constexpr):
    """``Y[m, n] += sum_k X[m, perm(k)] T[k, q[n, k]]`` over the columns of one segment's part, for row tile
    ``program_id(0)`` (of :data:`BT` rows) and rows ``program_id(1)`` of ``X``: ``program_id(2)`` is segment
    ``% NSEG``, part ``// NSEG`` of its columns (``NSEG = PARTS / SPLIT`` segments). Up to four segments of widths
    ``B0..B3`` (0: absent; first word ``WO``, first kernel column ``KO``, first plane word ``PO``, padded and
    valid columns ``KP``, ``KV``); ``PARTS`` = segments x ``SPLIT`` programs add into each output (atomically
    where more than one)."""
    tile = tl.program_id(0)
    pid_m = tl.program_id(1)
    z = tl.program_id(2)  # segment z % (PARTS / SPLIT), its part z // (PARTS / SPLIT) along K
    NSEG: tl.constexpr = PARTS // SPLIT
    seg = z % NSEG
    part = z // NSEG
    offs_n = tile * 32 + tl.arange(0, 32)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = offs_m < M
    if HAS_OUT:  # the outlier walk's first loads, before the main loop; the PARTS programs share the walk
        o_first, o_end, o_r, o_d, o_c = outliers_begin(offs_n, N, PTR, OROW, OCOL, OVAL, z, 32, OUT_CHUNK, PARTS)
    acc = tl.zeros((BLOCK_M, 32), dtype=tl.float32)
    if seg == 0:  # (one width: NSEG = 1, seg folds to 0 and the branch away)
        acc = segment(acc, X, stride_xm, offs_m, m_mask, Q, QH, QD0, TT, PERM, tile, part, WO0, KO0, PO0, KP0,
                      KV0, B0, KR, SPLIT, HAS_PERM, BLOCK_M, ASM, TMA and B0 == 4, STAGES)
    if B1 > 0:
        if seg == 1:
            acc = segment(acc, X, stride_xm, offs_m, m_mask, Q, QH, QD1, TT, PERM, tile, part, WO1, KO1, PO1, KP1,
                          KV1, B1, KR, SPLIT, HAS_PERM, BLOCK_M, ASM, TMA and B1 == 4, STAGES)
    if B2 > 0:
        if seg == 2:
            acc = segment(acc, X, stride_xm, offs_m, m_mask, Q, QH, QD2, TT, PERM, tile, part, WO2, KO2, PO2, KP2,
                          KV2, B2, KR, SPLIT, HAS_PERM, BLOCK_M, ASM, TMA and B2 == 4, STAGES)
    if B3 > 0:
        if seg == 3:
            acc = segment(acc, X, stride_xm, offs_m, m_mask, Q, QH, QD3, TT, PERM, tile, part, WO3, KO3, PO3, KP3,
                          KV3, B3, KR, SPLIT, HAS_PERM, BLOCK_M, ASM, TMA and B3 == 4, STAGES)
    if HAS_OUT:
        acc = outliers_end(acc, o_first, o_end, o_r, o_d, o_c, X, stride_xm, offs_m, m_mask, offs_n, N, PTR, OROW, OCOL,
                           OVAL, BLOCK_M, OUT_CHUNK, PARTS)
    store_y(Y, acc, offs_m, m_mask, offs_n, N, PARTS, T, TICKETS)


# ------------------------------------------------------------------------------------------------- launch


def segment_boxes(st: ColumnTableState, s: Segment, kr: int) -> TensorDescriptor:
    """A TMA descriptor of a 4-bit segment's words viewed as ``(tiles k_pad, BT / RPW)`` (one 16-byte row a
    column of a row tile), in boxes of ``kr`` columns: one iteration's words (:func:`segment`)."""
    bnw = BT // RPW[s.bits]
    rows = triton.cdiv(st.shape[0], BT) * s.k_pad
    return TensorDescriptor(st.words[s.word_offset:s.word_offset + rows * bnw], [rows, bnw], [bnw, 1], [kr, bnw])


def word_tma(c: Config, x: Tensor) -> bool:
    """Whether a launch at ``c`` takes its 4-bit segments' words as TMA boxes (:func:`segment_boxes`): GEMVs
    only (batches from boxes measured slower), boxes of at most 256 columns, 16-byte rows
    (:func:`lowbit.kernels.triton.common.tma_words`)."""
    return x.shape[0] == 1 and c.words <= 256 and tma_words(c, x, 4, BT // RPW[4])


def _launch(st: ColumnTableState, x: Tensor, c: Config) -> Tensor:
    """One launch: grid (row tiles, row blocks of ``x``, segments x ``split_k``); ``c.words`` columns an
    iteration."""
    if x.shape[1] != st.shape[1]:
        raise ValueError(f"x has {x.shape[1]} inputs, the weight {st.shape[1]}")
    if any(c.words % PB[s.bits] for s in st.segments):
        raise ValueError(f"4-bit column tables take a multiple of {PB[4]} columns an iteration, not {c.words}")
    m, n = x.shape[0], st.shape[0]
    bm = block_m(m)
    parts = len(st.segments) * c.split_k
    grid = (triton.cdiv(n, BT), triton.cdiv(m, bm), parts)
    y, words = output(m, n, grid, x, c)
    segs = st.segments + [Segment(0, 0, 0, 0, 0, 0)] * (MAX_SEGMENTS - len(st.segments))
    ints = [v for s in segs for v in (s.word_offset, s.col_offset, s.plane_offset, s.k_pad, s.k)]
    tma = word_tma(c, x)
    boxes = [segment_boxes(st, s, c.words) if tma and s.bits == 4 else st.words for s in segs]
    column_table_kernel[grid](
        x, y, words, st.words, st.high if st.high is not None else st.words, *boxes, st.planes,
        st.cols if st.cols is not None else st.planes, *outlier_args(st.outliers, y), m, n, x.stride(0), *ints,
        **{f"B{i}": s.bits for i, s in enumerate(segs)}, KR=c.words, SPLIT=c.split_k, PARTS=parts,
        HAS_PERM=st.cols is not None,
        HAS_OUT=st.outliers is not None, BLOCK_M=bm, OUT_CHUNK=out_chunk(BT, st.outliers),
        ASM=compiled_ptx(x), TMA=tma, STAGES=c.num_stages, TICKETS=c.tickets, num_warps=c.num_warps,
        num_stages=1)
    return y.to(x.dtype)


def tuning(st: ColumnTableState, xa: Tensor) -> tuple[tuple, list[Config]]:
    """The tuning key of ``st`` for activations ``xa`` and the configurations tried."""
    return (("column_table", *st.shape, tuple((s.bits, s.k_pad) for s in st.segments), st.outliers is not None,
             block_m(xa.shape[0]), xa.dtype),
            with_tickets(GEMV_CONFIGS if xa.shape[0] == 1 else DOT_CONFIGS, len(st.segments)))


def run(st: ColumnTableState, x: Tensor, config: Config | None = None) -> Tensor:
    """``x @ W_hat^T`` (:func:`lowbit.kernels.triton.common.run_tuned`); ``config`` forces a launch
    configuration (tests, the benchmark's sweep: ``words`` is the columns an iteration, ``block_n`` is
    :data:`BT`)."""
    return run_tuned(st, x, tuning, _launch, config)
