"""Lookup-table weights: per-column tables (CLAQ, CMPQ; mixed per-column widths) and binary codes (GPTQT).

One kernel reads ``W_hat[n, k] = T[row(k, n), q[n, k]]``, ``2^b`` fp16 values per table:

- ``table`` format (CLAQ, arXiv 2405.17233; CMPQ): one table per input column, ``row = k``, the
  ``2^b`` entries a ``b``-bit column can select (``2^(b+1)`` bytes a column), read by a 2-byte gather
  per code: ``W_hat[n, k] = tables[k, q[n, k]]``;
- ``binary`` format (BCQ; GPTQT, arXiv 2407.02891): ``W_hat[n, k] = offset[n, g] + sum_i alpha[n, g, i]
  (2 b_i - 1)`` takes ``2^b`` values per (row, group), affine in the code's bits. Prepare stores per
  (group, row) the value of code 0 and the step each bit adds (:func:`binary_steps`, ``(d_in / g, d_out,
  b + 1)`` fp16, each rounded once, where a table of the ``2^b`` values would add the rounding of up to
  ``b + 1`` entries); the kernel loads them once per word row and computes ``c0 + sum_p
  bit_p(q) c_{p+1}`` per weight (:func:`affine_bits`). No gather: with the lanes along the rows, a
  table gather would read a different row's table in every lane.

**Codes: word rows along K, output rows contiguous.** The words of :func:`lowbit.kernels.triton.common.pack_codes`
(blocks of ``KB`` inputs, ``PER`` codes a word) are stored transposed, ``(K / PER, d_out)``, so the lanes
of a warp run along the output rows (as far as a program's rows reach) and, for one shift of a word
tile, read one input column's table. Per code the table GEMV spends a shift and mask, an address add,
one 2-byte gather and an FFMA; a word row's activations are one broadcast load per shift. On the H100
this layout with per-width table strides made the 4-bit table GEMV 1.2-1.3x and mixed widths 2.4x
faster than v4's table kernel (words K-contiguous per row, as the uniform kernel keeps them), with
2-bit tables 0.94-0.99x (docs/results.md, v6). Profiles of the 4- and 2-bit table GEMVs on 4096 x
4096, in both layouts (taken before the per-width strides), put the L1 data pipe at 69-83% of peak
and DRAM at 3-10%: the per-column gathers, not the weight bytes, bound them.

**Mixed widths in one launch**: at prepare the columns of each width b are gathered into one segment
(the storage layout of :mod:`lowbit.core.storage` groups them the same way), padded to a multiple of
128 columns (zero codes, zero table rows, activations masked), with their input indices. The segments'
words are concatenated along K (one ``(sum_s k_pad_s / PER_s, d_out)`` int32 tensor; the 1-bit
high plane of the 3-bit segment apart), their ``(k_pad_s, 2^b_s)`` tables one after another in one
flat tensor (each segment's at its ``table_offset``), their input indices concatenated; the kernel
takes the segments' widths as constants (up to 4) and runs one specialized loop per segment, each
program summing its rows over every segment: one launch, no atomics, the byte-weighted mix of the
single-width loops. Sparse outliers are added after the last segment.
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
    Config,
    Outliers,
    as_float,
    block_m,
    block_size,
    blocks_per_iter,
    candidates,
    code_at,
    gather_stages,
    grid_outliers,
    loads_ahead,
    out_chunk,
    outlier_args,
    outliers_begin,
    outliers_end,
    pack_codes,
    pad_cols,
    run_tuned,
    store_y,
)
from .uniform import group_perm

PAD = 128  # columns of a mixed-width segment are padded to a multiple of this
MAX_SEGMENTS = 4


@dataclass
class Segment:
    """Columns of one width: where they are in the concatenated tensors of :class:`TableState`."""

    bits: int
    word_offset: int  # first word row of the segment in ``TableState.words``
    col_offset: int  # first column of the segment in ``cols``
    table_offset: int  # first entry of the segment's tables in ``TableState.tables`` (2^bits per column)
    k: int  # columns in the segment (before padding)
    k_pad: int


@dataclass
class TableState:
    """The kernel layout of a ``table`` or ``binary`` weight: segments by width, outliers."""

    words: Tensor  # (sum_s k_pad_s / PER_s, d_out) int32: word rows along K, output rows contiguous
    high: Tensor | None  # (k_pad_3 / 16, d_out) int16: the high bits of the 3-bit segment
    tables: Tensor  # flat fp16: table: each segment's (k_pad_s, 2^b_s) in turn; binary: steps (d_in / g, d_out, b + 1)
    cols: Tensor | None  # (sum_s k_pad_s,) int32 input column of each kernel column, or None (in order)
    segments: list[Segment]
    outliers: Outliers | None
    group_size: int  # 0 for per-column tables, g for binary codes
    block: int  # KB
    shape: tuple[int, int]


def _concat(parts: list[tuple[int, Tensor, int, int]], kb: int, dev: torch.device
            ) -> tuple[Tensor, Tensor | None, list[Segment]]:
    """Segments ``(bits, codes (d_out, k_pad), k, k_pad)`` -> their words (:func:`pack_codes`, transposed
    to ``(k_pad / PER, d_out)``) concatenated along K, the 3-bit high plane, segments."""
    words, high, segments, wo, ko, to = [], None, [], 0, 0, 0
    for b, codes, k, k_pad in parts:
        planes = [p.T for p in pack_codes(codes, b, kb)]
        words.append(planes[0])
        if b == 3:
            high = planes[1].contiguous()
        segments.append(Segment(b, wo, ko, to, k, k_pad))
        wo, ko, to = wo + planes[0].shape[0], ko + k_pad, to + (k_pad << b)
    return torch.cat(words, 0).contiguous(), high, segments


def entries(tables: Tensor, bits: int) -> Tensor:
    """The first ``2^bits`` entries of each column's table ``(k, >= 1)`` (zero-padded): all a ``bits``-bit code
    can select."""
    return pad_cols(tables[:, :1 << bits], 1 << bits)


def prepare_table(qw: QuantizedWeight, device: torch.device | str | None = None) -> TableState:
    """Re-layout a ``table`` weight (one width, or per-column widths grouped into segments)."""
    dev = torch.device(device) if device is not None else qw.codes.device
    assert qw.tables is not None
    d_out, d_in = qw.shape
    codes = qw.codes.to(dev)
    tables = qw.tables.to(dev, torch.float16)
    if not isinstance(qw.bits, Tensor):
        b, kb = int(qw.bits), block_size(d_in)
        words, high, segments = _concat([(b, codes, d_in, d_in)], kb, dev)
        return TableState(words, high, entries(tables, b).reshape(-1), None, segments, grid_outliers(qw, dev), 0, kb,
                          (d_out, d_in))
    widths = qw.bits.to(dev).long()
    parts, seg_tables, seg_cols = [], [], []
    for b in sorted(set(widths.tolist())):
        cols = (widths == b).nonzero().squeeze(1)
        k = cols.numel()
        k_pad = triton.cdiv(k, PAD) * PAD
        parts.append((b, pad_cols(codes[:, cols].long(), k_pad), k, k_pad))
        seg_tables.append(pad_cols(entries(tables[cols], b).T, k_pad).T.reshape(-1))
        seg_cols.append(pad_cols(cols[None].int(), k_pad)[0])
    words, high, segments = _concat(parts, PAD, dev)
    return TableState(words, high, torch.cat(seg_tables).contiguous(), torch.cat(seg_cols).contiguous(), segments,
                      grid_outliers(qw, dev), 0, PAD, (d_out, d_in))


def binary_steps(alphas: Tensor, offsets: Tensor) -> Tensor:
    """``(..., b)`` coefficients and ``(...)`` offsets -> ``(..., b + 1)``: the value of code 0, ``offset -
    sum_i alpha_i``, then the step ``2 alpha`` that each bit of the code adds, least significant bit first
    (bit ``p`` goes with ``alpha_{b-1-p}``, :func:`lowbit.core.formats.binary_code_values`): code ``j``'s
    value is ``steps[0] + sum_p bit_p(j) steps[1 + p]``."""
    return torch.cat([(offsets - alphas.sum(-1))[..., None], 2 * alphas.flip(-1)], -1)


def prepare_binary(qw: QuantizedWeight, device: torch.device | str | None = None) -> TableState:
    """Re-layout a ``binary`` weight: per (group, row) the ``b + 1`` fp16 values of :func:`binary_steps`,
    stored ``(d_in / g, d_out, b + 1)``."""
    dev = torch.device(device) if device is not None else qw.codes.device
    assert qw.alphas is not None and qw.offsets is not None
    d_out, d_in = qw.shape
    gs = qw.group_size or d_in
    b = int(qw.bits)
    steps = binary_steps(qw.alphas.to(dev).float(), qw.offsets.to(dev).float())  # (d_out, G, b + 1)
    tables = steps.transpose(0, 1).to(torch.float16).contiguous()
    codes = qw.codes.to(dev)
    perm = group_perm(qw)
    if perm is not None:
        perm = perm.to(dev)
        codes = codes[:, perm]
    kb = block_size(d_in, gs)
    words, high, segments = _concat([(b, codes, d_in, d_in)], kb, dev)
    return TableState(words, high, tables.reshape(-1), None if perm is None else perm.to(torch.int32), segments,
                      grid_outliers(qw, dev), gs, kb, (d_out, d_in))


@triton.jit
def segment_words(Q0, Q1, offs_n, N, wo, r0, n_wrows, W1: tl.constexpr, R: tl.constexpr):
    """The ``(R, BLOCK_N)`` code words of word rows ``r0 .. r0 + R`` (those before ``n_wrows``) of a segment
    starting at word row ``wo``, and of its 1-bit high plane (3 bits), for output rows ``offs_n`` (zero past ``N``)."""
    r = r0 + tl.arange(0, R)
    ok = (r < n_wrows)[:, None] & (offs_n < N)[None, :]
    w0 = tl.load(Q0 + (wo + r)[:, None] * N + offs_n[None, :], mask=ok, other=0).to(tl.int32)
    w1 = w0
    if W1 > 0:
        w1 = tl.load(Q1 + r[:, None] * N + offs_n[None, :], mask=ok, other=0).to(tl.int32)
    return w0, w1


@triton.jit
def load_xt(X, stride_xm, offs_m, m_mask, k, ok, PERM, HAS_PERM: tl.constexpr):
    """Activations ``(R, BLOCK_M)`` of inputs ``k`` ``(R,)`` (columns ``PERM[k]`` when permuted), zero where
    not ``ok``: the transposed tile of :func:`lowbit.kernels.triton.common.load_x`, for word tiles whose
    rows run along K."""
    if HAS_PERM:
        k = tl.load(PERM + k, mask=ok, other=0)
    return tl.load(X + offs_m[None, :] * stride_xm + k[:, None], mask=ok[:, None] & m_mask[None, :], other=0.0)


@triton.jit
def load_steps(T, t, ok, B: tl.constexpr):
    """The :func:`binary_steps` of ``B``-bit codes (``B <= 4``) at ``T[t + j]``, ``j = 0 .. B``, as fp32
    tiles ``c0 .. c4`` (unused ones zero)."""
    c0 = tl.load(T + t, mask=ok, other=0.0).to(tl.float32)
    c1 = tl.load(T + t + 1, mask=ok, other=0.0).to(tl.float32)
    c2 = tl.zeros_like(c1)
    c3 = tl.zeros_like(c1)
    c4 = tl.zeros_like(c1)
    if B > 1:
        c2 = tl.load(T + t + 2, mask=ok, other=0.0).to(tl.float32)
    if B > 2:
        c3 = tl.load(T + t + 3, mask=ok, other=0.0).to(tl.float32)
    if B > 3:
        c4 = tl.load(T + t + 4, mask=ok, other=0.0).to(tl.float32)
    return c0, c1, c2, c3, c4


@triton.jit
def affine_bits(q, c0, c1, c2, c3, c4, B: tl.constexpr):
    """Code ``q``'s value ``c0 + sum_p bit_p(q) c_{p+1}`` (:func:`load_steps`): binary codes without a
    table gather, each bit made an fp32 0 or 1 by :func:`lowbit.kernels.triton.common.as_float`."""
    w = c0 + as_float(q & 1) * c1
    if B > 1:
        w += as_float((q >> 1) & 1) * c2
    if B > 2:
        w += as_float((q >> 2) & 1) * c3
    if B > 3:
        w += as_float((q >> 3) & 1) * c4
    return w


@triton.jit
def segment_loop(X, stride_xm, offs_m, m_mask, offs_n, N, Q0, Q1, T, PERM, wo, ko, to, k_pad, k_valid,
                 KB: tl.constexpr, TGS: tl.constexpr, PER: tl.constexpr, W0: tl.constexpr, W1: tl.constexpr,
                 HAS_PERM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, R: tl.constexpr,
                 PREFETCH: tl.constexpr):
    """``(BLOCK_M, BLOCK_N)`` partial ``sum_k X[m, perm(ko + k)] T[row(k, n), q[n, k]]`` over one segment's
    columns ``k < k_pad`` (valid below ``k_valid``), ``R`` word rows (``R PER`` inputs) per iteration;
    ``TGS = 0``: per-column tables at ``to`` (a gather per code), else binary codes' steps per (group of
    ``TGS``, row) (:func:`affine_bits`). Word row ``r`` holds the codes of inputs ``k = (r // WB) KB + i
    WB + r % WB`` (shift ``i``) for every output row, so one shift of an ``(R, BLOCK_N)`` word tile is a
    code tile whose lanes, along the output rows, read one column's table. A GEMV sums ``w x`` into an
    fp32 ``(R, BLOCK_N)`` tile, reduced over its rows after the loop; batches ``tl.dot`` the ``(BLOCK_M,
    R)`` activations with the ``(R, BLOCK_N)`` weights in the activations' dtype. ``PREFETCH``: the next
    iteration's code words are loaded before this one's arithmetic (a register double buffer: the next
    words copied into the current ones at the loop's end, see
    :func:`lowbit.kernels.triton.common.loads_ahead`)."""
    WB: tl.constexpr = KB // PER
    TS: tl.constexpr = 1 << (W0 + W1)  # entries per table
    n_wrows = k_pad // PER
    if BLOCK_M == 1:
        acc = tl.zeros((R, BLOCK_N), dtype=tl.float32)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if PREFETCH:
        w0n, w1n = segment_words(Q0, Q1, offs_n, N, wo, 0, n_wrows, W1, R)
    for r0 in range(0, n_wrows, R):
        r = r0 + tl.arange(0, R)
        ok = r < n_wrows
        if PREFETCH:
            w0, w1 = w0n, w1n
            w0n, w1n = segment_words(Q0, Q1, offs_n, N, wo, r0 + R, n_wrows, W1, R)
        else:
            w0, w1 = segment_words(Q0, Q1, offs_n, N, wo, r0, n_wrows, W1, R)
        blk = r // WB
        k0 = blk * KB + r % WB  # (R,) inputs of shift 0
        if TGS == 0:
            tbase = (to + k0 * TS)[:, None]
        else:
            t_row = ((blk * KB // TGS)[:, None] * N + tl.minimum(offs_n, N - 1)[None, :]) * (W0 + W1 + 1)
            c0, c1, c2, c3, c4 = load_steps(T, t_row, ok[:, None], W0 + W1)
        for i in tl.static_range(PER):
            q = code_at(w0, w1, i, W0, W1)
            k = k0 + i * WB
            if TGS == 0:
                w = tl.load(T + tbase + i * WB * TS + q, mask=ok[:, None], other=0.0)
            else:
                w = affine_bits(q, c0, c1, c2, c3, c4, W0 + W1)
            x = load_xt(X, stride_xm, offs_m, m_mask, ko + k, ok & (k < k_valid), PERM, HAS_PERM)
            if BLOCK_M == 1:
                acc += w.to(tl.float32) * x.to(tl.float32)
            else:
                acc = tl.dot(tl.trans(x), w.to(x.dtype), acc)
    if BLOCK_M == 1:
        acc = tl.sum(acc, axis=0)[None, :]
    return acc


@triton.jit
def segment(X, stride_xm, offs_m, m_mask, offs_n, N, Q0, Q1, T, PERM,
            wo, ko, to, k_pad, k_valid, KB: tl.constexpr, TGS: tl.constexpr, B: tl.constexpr,
            HAS_PERM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, R: tl.constexpr,
            PREFETCH: tl.constexpr):
    """:func:`segment_loop` for codes of ``B`` bits (3 bits: a 2-bit and a 1-bit plane, 16 per word)."""
    if B == 3:
        part = segment_loop(X, stride_xm, offs_m, m_mask, offs_n, N, Q0, Q1, T, PERM,
                            wo, ko, to, k_pad, k_valid, KB, TGS, 16, 2, 1, HAS_PERM, BLOCK_M, BLOCK_N, R, PREFETCH)
    else:
        part = segment_loop(X, stride_xm, offs_m, m_mask, offs_n, N, Q0, Q1, T, PERM,
                            wo, ko, to, k_pad, k_valid, KB, TGS, 32 // B, B, 0, HAS_PERM, BLOCK_M, BLOCK_N, R, PREFETCH)
    return part


@triton.jit
def table_kernel(X, Y, Q0, Q1, T, PERM, PTR, OROW, OCOL, OVAL, M, N, stride_xm,
                 WO0, KO0, TO0, KP0, KV0, WO1, KO1, TO1, KP1, KV1, WO2, KO2, TO2, KP2, KV2,
                 WO3, KO3, TO3, KP3, KV3,
                 B0: tl.constexpr, B1: tl.constexpr, B2: tl.constexpr, B3: tl.constexpr,
                 R0: tl.constexpr, R1: tl.constexpr, R2: tl.constexpr, R3: tl.constexpr,
                 KB: tl.constexpr, TGS: tl.constexpr, HAS_PERM: tl.constexpr, HAS_OUT: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, OUT_CHUNK: tl.constexpr, PREFETCH: tl.constexpr):
    """``Y[m, n] = sum_segments sum_k X[m, perm(k)] T[row(k, n), q[n, k]]``: up to four segments of
    widths ``B0..B3`` (0: absent; word offset ``WO``, column offset ``KO``, padded and valid columns
    ``KP``, ``KV``, first table entry ``TO``; ``R``: word rows per iteration), one program per ``BLOCK_N`` rows."""
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = offs_m < M
    if HAS_OUT:  # the outlier walk's first loads, before the main loop
        o_first, o_end, o_r, o_d, o_x = outliers_begin(X, stride_xm, offs_m, m_mask, offs_n, N, PTR, OROW, OCOL, OVAL,
                                                       0, BLOCK_N, OUT_CHUNK, 1)
    acc = segment(X, stride_xm, offs_m, m_mask, offs_n, N, Q0, Q1, T, PERM,
                  WO0, KO0, TO0, KP0, KV0, KB, TGS, B0, HAS_PERM, BLOCK_M, BLOCK_N, R0, PREFETCH)
    if B1 > 0:
        acc += segment(X, stride_xm, offs_m, m_mask, offs_n, N, Q0, Q1, T, PERM,
                       WO1, KO1, TO1, KP1, KV1, KB, TGS, B1, HAS_PERM, BLOCK_M, BLOCK_N, R1, PREFETCH)
    if B2 > 0:
        acc += segment(X, stride_xm, offs_m, m_mask, offs_n, N, Q0, Q1, T, PERM,
                       WO2, KO2, TO2, KP2, KV2, KB, TGS, B2, HAS_PERM, BLOCK_M, BLOCK_N, R2, PREFETCH)
    if B3 > 0:
        acc += segment(X, stride_xm, offs_m, m_mask, offs_n, N, Q0, Q1, T, PERM,
                       WO3, KO3, TO3, KP3, KV3, KB, TGS, B3, HAS_PERM, BLOCK_M, BLOCK_N, R3, PREFETCH)
    if HAS_OUT:
        acc = outliers_end(acc, o_first, o_end, o_r, o_d, o_x, X, stride_xm, offs_m, m_mask, offs_n, OROW, OCOL, OVAL,
                           BLOCK_M, OUT_CHUNK, 1)
    store_y(Y, acc, offs_m, m_mask, offs_n, N, 1)


def prefetch(st: TableState, c: Config, bm: int) -> bool:
    """Whether :func:`segment_loop` loads one iteration ahead (:func:`lowbit.kernels.triton.common.loads_ahead`)
    over a single-width table. On the H100 (docs/results.md), with the K-contiguous layout of v4, prefetch
    made 11 of 12 single-width layers (tables of 2-4 bits, binary 2-bit) 2-10% faster and one 5% slower,
    and mixed widths (a loop per width, each holding its next words) 10-24% slower; with this layout,
    mixed widths measured 15% slower on two of three layers and 16% faster on one. So mixed widths load
    each iteration's words when it starts; for single widths the sweep chooses per layer between
    configurations with and without it."""
    return loads_ahead(c, bm) and len(st.segments) == 1


def _launch(st: TableState, x: Tensor, c: Config) -> Tensor:
    m, n = x.shape[0], st.shape[0]
    bm = block_m(m)
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)
    segs = st.segments + [Segment(0, 0, 0, 0, 0, 0)] * (MAX_SEGMENTS - len(st.segments))
    ints = [v for s in segs for v in (s.word_offset, s.col_offset, s.table_offset, s.k_pad, s.k)]
    word_rows = {f"R{i}": blocks_per_iter(c, PER[s.bits], st.block, s.k_pad // st.block, bm) * st.block // PER[s.bits]
                 if s.bits else 1 for i, s in enumerate(segs)}
    high = st.high if st.high is not None else st.words
    table_kernel[(triton.cdiv(n, c.block_n), triton.cdiv(m, bm))](
        x, y, st.words, high, st.tables, st.cols if st.cols is not None else st.tables,
        *outlier_args(st.outliers, y), m, n, x.stride(0),
        *ints, **{f"B{i}": s.bits for i, s in enumerate(segs)}, **word_rows, KB=st.block, TGS=st.group_size,
        HAS_PERM=st.cols is not None, HAS_OUT=st.outliers is not None, BLOCK_M=bm, BLOCK_N=c.block_n,
        OUT_CHUNK=out_chunk(c.block_n, st.outliers), PREFETCH=prefetch(st, c, bm), num_warps=c.num_warps,
        num_stages=gather_stages(c, bm))
    return y


def tuning(st: TableState, xa: Tensor) -> tuple[tuple, list[Config]]:
    """The tuning key of ``st`` for activations ``xa`` and the configurations tried (no split K: a
    program sums every segment of its rows)."""
    return (("table", *st.shape, st.group_size, tuple((s.bits, s.k_pad) for s in st.segments),
             st.outliers is not None, block_m(xa.shape[0]), xa.dtype), candidates(xa.shape[0], split=False))


def run(st: TableState, x: Tensor, config: Config | None = None) -> Tensor:
    """``x @ W_hat^T`` (:func:`lowbit.kernels.triton.common.run_tuned`); ``config`` forces a launch
    configuration (tests, the benchmark's sweep)."""
    return run_tuned(st, x, tuning, _launch, config)
