"""Lookup-table weights: per-column tables (CLAQ, CMPQ; mixed per-column widths) and binary codes (GPTQT).

One kernel reads ``W_hat[n, k] = T[row(k, n), q[n, k]]``, a gather from a small fp16 table:

- ``table`` format (CLAQ, arXiv 2405.17233; CMPQ): one table per input column, ``row = k``, tables
  ``(k_pad, 16)`` fp16 (32 B per column, L1-resident); ``W_hat[n, k] = tables[k, q[n, k]]``;
- ``binary`` format (BCQ; GPTQT, arXiv 2407.02891): ``W_hat[n, k] = offset[n, g] + sum_i alpha[n, g, i]
  (2 b_i - 1)`` takes ``2^b`` values per (row, group), so it is a table per (group, row): ``row =
  (k // g) d_out + n``, tables ``(d_in / g, d_out, 2^b)`` fp16 built once by
  :func:`lowbit.core.formats.binary_code_values` (no arithmetic per weight).

Codes are in the block-interleaved K-contiguous layout of :mod:`lowbit.kernels.triton.common` (blocks
of ``KB`` inputs); per code the GEMV spends a shift and mask, an address add, one 2-byte gather (lanes
of a warp along the rows of one column hit one 32-byte table row) and an FFMA.

**Mixed widths in one launch**: at prepare the columns of each width b are gathered into one segment
(the storage layout of :mod:`lowbit.core.storage` groups them the same way), padded to a multiple of
128 columns (zero codes, zero table rows, activations masked), with their input indices. The segments'
words are concatenated along each row (one ``(d_out, sum_s k_s / PER_s)`` int32 tensor; the 1-bit
high plane of the 3-bit segment apart), their tables and indices along the columns; the kernel takes
the segments' widths as constants (up to 4) and runs one specialized loop per segment, each program
summing its rows over every segment: one launch, no atomics, the byte-weighted mix of the single-width
loops. Sparse outliers are added after the last segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor

from lowbit.core.formats import QuantizedWeight, binary_code_values

from .common import (
    PER,
    Config,
    Outliers,
    block_m,
    block_size,
    blocks_per_iter,
    candidates,
    code_at,
    finish,
    gather_stages,
    grid_outliers,
    load_words,
    load_x,
    loads_ahead,
    mac,
    out_chunk,
    outlier_args,
    outliers_begin,
    outliers_end,
    pack_codes,
    pad_cols,
    run_tuned,
    store_y,
    zeros_acc,
)
from .uniform import group_perm

PAD = 128  # columns of a mixed-width segment are padded to a multiple of this
MAX_SEGMENTS = 4
TABLE_STRIDE = 16  # entries per column table (any width up to 4 bits)


@dataclass
class Segment:
    """Columns of one width: where they are in the concatenated tensors of :class:`TableState`."""

    bits: int
    word_offset: int  # first word of the segment in each row of ``TableState.words``
    col_offset: int  # first column of the segment in ``tables`` / ``cols``
    k: int  # columns in the segment (before padding)
    k_pad: int


@dataclass
class TableState:
    """The kernel layout of a ``table`` or ``binary`` weight: segments by width, outliers."""

    words: Tensor  # (d_out, sum_s k_pad_s / PER_s) int32
    high: Tensor | None  # (d_out, k_pad_3 / 16) int16: the high bits of the 3-bit segment
    tables: Tensor  # table: (sum_s k_pad_s, 16) fp16; binary: (d_in / g, d_out, 2^b) fp16
    cols: Tensor | None  # (sum_s k_pad_s,) int32 input column of each kernel column, or None (in order)
    segments: list[Segment]
    outliers: Outliers | None
    group_size: int  # 0 for per-column tables, g for binary codes
    block: int  # KB
    table_stride: int
    shape: tuple[int, int]


def _concat(parts: list[tuple[int, Tensor, int, int]], kb: int, dev: torch.device
            ) -> tuple[Tensor, Tensor | None, list[Segment]]:
    """Segments ``(bits, codes (d_out, k_pad), k, k_pad)`` -> concatenated words, 3-bit high plane, segments."""
    words, high, segments, wo, ko = [], None, [], 0, 0
    for b, codes, k, k_pad in parts:
        planes = pack_codes(codes, b, kb)
        words.append(planes[0])
        if b == 3:
            high = planes[1]
        segments.append(Segment(b, wo, ko, k, k_pad))
        wo, ko = wo + planes[0].shape[1], ko + k_pad
    return torch.cat(words, 1).contiguous(), high, segments


def prepare_table(qw: QuantizedWeight, device: torch.device | str | None = None) -> TableState:
    """Re-layout a ``table`` weight (one width, or per-column widths grouped into segments)."""
    dev = torch.device(device) if device is not None else qw.codes.device
    assert qw.tables is not None
    d_out, d_in = qw.shape
    codes = qw.codes.to(dev)
    tables = pad_cols(qw.tables.to(dev, torch.float16), TABLE_STRIDE)
    if not isinstance(qw.bits, Tensor):
        b, kb = int(qw.bits), block_size(d_in)
        words, high, segments = _concat([(b, codes, d_in, d_in)], kb, dev)
        return TableState(words, high, tables.contiguous(), None, segments, grid_outliers(qw, dev), 0, kb,
                          TABLE_STRIDE, (d_out, d_in))
    widths = qw.bits.to(dev).long()
    parts, seg_tables, seg_cols = [], [], []
    for b in sorted(set(widths.tolist())):
        cols = (widths == b).nonzero().squeeze(1)
        k = cols.numel()
        k_pad = triton.cdiv(k, PAD) * PAD
        parts.append((b, pad_cols(codes[:, cols].long(), k_pad), k, k_pad))
        seg_tables.append(pad_cols(tables[cols].T, k_pad).T)
        seg_cols.append(pad_cols(cols[None].int(), k_pad)[0])
    words, high, segments = _concat(parts, PAD, dev)
    return TableState(words, high, torch.cat(seg_tables).contiguous(), torch.cat(seg_cols).contiguous(), segments,
                      grid_outliers(qw, dev), 0, PAD, TABLE_STRIDE, (d_out, d_in))


def prepare_binary(qw: QuantizedWeight, device: torch.device | str | None = None) -> TableState:
    """Re-layout a ``binary`` weight: its ``2^b`` values per (row, group) as tables ``(d_in / g, d_out, 2^b)``."""
    dev = torch.device(device) if device is not None else qw.codes.device
    assert qw.alphas is not None and qw.offsets is not None
    d_out, d_in = qw.shape
    gs = qw.group_size or d_in
    b = int(qw.bits)
    values = binary_code_values(qw.alphas.to(dev).float(), qw.offsets.to(dev).float())  # (d_out, G, 2^b)
    tables = values.transpose(0, 1).to(torch.float16).contiguous()
    codes = qw.codes.to(dev)
    perm = group_perm(qw)
    if perm is not None:
        perm = perm.to(dev)
        codes = codes[:, perm]
    kb = block_size(d_in, gs)
    words, high, segments = _concat([(b, codes, d_in, d_in)], kb, dev)
    return TableState(words, high, tables, None if perm is None else perm.to(torch.int32), segments,
                      grid_outliers(qw, dev), gs, kb, 1 << b, (d_out, d_in))


@triton.jit
def segment_words(Q0, Q1, rows, row_words, row_words1, wo, b0, n_blocks, W1: tl.constexpr, WB: tl.constexpr,
                  GPI: tl.constexpr):
    """The ``(BLOCK_N, GPI, WB)`` code words of blocks ``b0 ..`` (those before ``n_blocks``) of a segment
    starting at word ``wo`` of each row, and of its 1-bit high plane (3 bits)."""
    blk = b0 + tl.arange(0, GPI)
    ok = blk < n_blocks
    wcol = blk[:, None] * WB + tl.arange(0, WB)[None, :]
    w0 = load_words(Q0, rows, row_words, wo + wcol, ok)
    w1 = w0
    if W1 > 0:
        w1 = load_words(Q1, rows, row_words1, wcol, ok)
    return w0, w1


@triton.jit
def segment_loop(X, stride_xm, offs_m, m_mask, rows, N, Q0, Q1, T, PERM, row_words, row_words1, TS,
                 wo, ko, k_pad, k_valid, KB: tl.constexpr, TGS: tl.constexpr, PER: tl.constexpr,
                 W0: tl.constexpr, W1: tl.constexpr, HAS_PERM: tl.constexpr, BLOCK_M: tl.constexpr,
                 BLOCK_N: tl.constexpr, GPI: tl.constexpr, PREFETCH: tl.constexpr):
    """``(BLOCK_M, BLOCK_N)`` partial ``sum_k X[m, perm(ko + k)] T[row(k, n), q[n, k]]`` over one segment's
    columns ``k < k_pad`` (valid below ``k_valid``); ``TGS = 0``: per-column tables, else binary
    tables per (group of ``TGS``, row). ``PREFETCH``: the next iteration's code words are loaded before
    this one's table gathers (a register double buffer: the next words copied into the current ones at
    the loop's end, see :func:`lowbit.kernels.triton.common.loads_ahead`)."""
    WB: tl.constexpr = KB // PER
    n_blocks = k_pad // KB
    gi = tl.arange(0, GPI)
    j = tl.arange(0, WB)
    acc = zeros_acc(BLOCK_M, BLOCK_N, GPI, WB)
    if PREFETCH:
        w0n, w1n = segment_words(Q0, Q1, rows, row_words, row_words1, wo, 0, n_blocks, W1, WB, GPI)
    for b0 in range(0, n_blocks, GPI):
        blk = b0 + gi
        ok = blk < n_blocks
        if PREFETCH:
            w0, w1 = w0n, w1n
            w0n, w1n = segment_words(Q0, Q1, rows, row_words, row_words1, wo, b0 + GPI, n_blocks, W1, WB, GPI)
        else:
            w0, w1 = segment_words(Q0, Q1, rows, row_words, row_words1, wo, b0, n_blocks, W1, WB, GPI)
        k = blk[:, None] * KB + j[None, :]
        k_ok = ok[:, None] & (k < k_valid)
        if TGS == 0:
            tbase = ((ko + k) * TS)[None, :, :]
        else:
            tbase = (((blk * KB // TGS)[None, :, None] * N + rows[:, None, None]) * TS)
        for i in tl.static_range(PER):
            q = code_at(w0, w1, i, W0, W1)
            if TGS == 0:
                t = tbase + i * WB * TS + q
            else:
                t = tbase + q
            w = tl.load(T + t, mask=ok[None, :, None], other=0.0).to(tl.float32)
            x = load_x(X, stride_xm, offs_m, m_mask, ko + k + i * WB, k_ok, PERM, HAS_PERM)
            acc = mac(acc, x, w, BLOCK_M, BLOCK_N, GPI * WB)
    return finish(acc, BLOCK_M)


@triton.jit
def segment(X, stride_xm, offs_m, m_mask, rows, N, Q0, Q1, T, PERM, row_words, row_words1, TS,
            wo, ko, k_pad, k_valid, KB: tl.constexpr, TGS: tl.constexpr, B: tl.constexpr,
            HAS_PERM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GPI: tl.constexpr,
            PREFETCH: tl.constexpr):
    """:func:`segment_loop` for codes of ``B`` bits (3 bits: a 2-bit and a 1-bit plane, 16 per word)."""
    if B == 3:
        part = segment_loop(X, stride_xm, offs_m, m_mask, rows, N, Q0, Q1, T, PERM, row_words, row_words1, TS,
                            wo, ko, k_pad, k_valid, KB, TGS, 16, 2, 1, HAS_PERM, BLOCK_M, BLOCK_N, GPI, PREFETCH)
    else:
        part = segment_loop(X, stride_xm, offs_m, m_mask, rows, N, Q0, Q1, T, PERM, row_words, row_words1, TS,
                            wo, ko, k_pad, k_valid, KB, TGS, 32 // B, B, 0, HAS_PERM, BLOCK_M, BLOCK_N, GPI, PREFETCH)
    return part


@triton.jit
def table_kernel(X, Y, Q0, Q1, T, PERM, PTR, OROW, OCOL, OVAL, M, N, stride_xm, row_words, row_words1, TS,
                 WO0, KO0, KP0, KV0, WO1, KO1, KP1, KV1, WO2, KO2, KP2, KV2, WO3, KO3, KP3, KV3,
                 B0: tl.constexpr, B1: tl.constexpr, B2: tl.constexpr, B3: tl.constexpr,
                 G0: tl.constexpr, G1: tl.constexpr, G2: tl.constexpr, G3: tl.constexpr,
                 KB: tl.constexpr, TGS: tl.constexpr, HAS_PERM: tl.constexpr, HAS_OUT: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, OUT_CHUNK: tl.constexpr, PREFETCH: tl.constexpr):
    """``Y[m, n] = sum_segments sum_k X[m, perm(k)] T[row(k, n), q[n, k]]``: up to four segments of
    widths ``B0..B3`` (0: absent; word offset ``WO``, column offset ``KO``, padded and valid columns
    ``KP``, ``KV``; ``G``: blocks per iteration), one program per ``BLOCK_N`` rows."""
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rows = tl.minimum(offs_n, N - 1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = offs_m < M
    if HAS_OUT:  # the outlier walk's first loads, before the main loop
        o_first, o_end, o_r, o_d, o_x = outliers_begin(X, stride_xm, offs_m, m_mask, offs_n, N, PTR, OROW, OCOL, OVAL,
                                                       0, BLOCK_N, OUT_CHUNK, 1)
    acc = segment(X, stride_xm, offs_m, m_mask, rows, N, Q0, Q1, T, PERM, row_words, row_words1, TS,
                  WO0, KO0, KP0, KV0, KB, TGS, B0, HAS_PERM, BLOCK_M, BLOCK_N, G0, PREFETCH)
    if B1 > 0:
        acc += segment(X, stride_xm, offs_m, m_mask, rows, N, Q0, Q1, T, PERM, row_words, row_words1, TS,
                       WO1, KO1, KP1, KV1, KB, TGS, B1, HAS_PERM, BLOCK_M, BLOCK_N, G1, PREFETCH)
    if B2 > 0:
        acc += segment(X, stride_xm, offs_m, m_mask, rows, N, Q0, Q1, T, PERM, row_words, row_words1, TS,
                       WO2, KO2, KP2, KV2, KB, TGS, B2, HAS_PERM, BLOCK_M, BLOCK_N, G2, PREFETCH)
    if B3 > 0:
        acc += segment(X, stride_xm, offs_m, m_mask, rows, N, Q0, Q1, T, PERM, row_words, row_words1, TS,
                       WO3, KO3, KP3, KV3, KB, TGS, B3, HAS_PERM, BLOCK_M, BLOCK_N, G3, PREFETCH)
    if HAS_OUT:
        acc = outliers_end(acc, o_first, o_end, o_r, o_d, o_x, X, stride_xm, offs_m, m_mask, offs_n, OROW, OCOL, OVAL,
                           BLOCK_M, OUT_CHUNK, 1)
    store_y(Y, acc, offs_m, m_mask, offs_n, N, 1)


def prefetch(st: TableState, c: Config, bm: int) -> bool:
    """Whether :func:`segment_loop` loads one iteration ahead (:func:`lowbit.kernels.triton.common.loads_ahead`)
    over a single-width table. On the H100 prefetch made 11 of 12 single-width layers (tables of 2-4 bits,
    binary 2-bit) 2-10% faster and one 5% slower, and mixed widths (four loops, each holding its next
    words) 10-24% slower (docs/results.md), so mixed widths load each iteration's words when it starts."""
    return loads_ahead(c, bm) and len(st.segments) == 1


def _launch(st: TableState, x: Tensor, c: Config) -> Tensor:
    m, n = x.shape[0], st.shape[0]
    bm = block_m(m)
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)
    segs = st.segments + [Segment(0, 0, 0, 0, 0)] * (MAX_SEGMENTS - len(st.segments))
    ints = [v for s in segs for v in (s.word_offset, s.col_offset, s.k_pad, s.k)]
    gpis = {f"G{i}": blocks_per_iter(c, PER[s.bits], st.block, s.k_pad // st.block, bm) if s.bits else 1
            for i, s in enumerate(segs)}
    high = st.high if st.high is not None else st.words
    table_kernel[(triton.cdiv(n, c.block_n), triton.cdiv(m, bm))](
        x, y, st.words, high, st.tables, st.cols if st.cols is not None else st.tables,
        *outlier_args(st.outliers, y), m, n, x.stride(0), st.words.shape[1], high.shape[1], st.table_stride,
        *ints, **{f"B{i}": s.bits for i, s in enumerate(segs)}, **gpis, KB=st.block, TGS=st.group_size,
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
