"""Lookup-table weights: per-column tables (CLAQ, CMPQ; mixed per-column widths) and binary codes (GPTQT).

One kernel reads ``W_hat[n, k] = T[row(k, n), q[k, n]]`` with ``row(k, n) = (k // TGS) * T_SG / TS +
n * T_SN / TS``, i.e. a gather from a small table addressed by strides:

- ``table`` format (CLAQ, arXiv 2405.17233; CMPQ): one table per input column, ``TGS = 1``,
  ``T_SG = 2^b``, ``T_SN = 0``; ``W_hat[n, k] = tables[k, q[n, k]]``;
- ``binary`` format (BCQ; GPTQT, arXiv 2407.02891): ``W_hat[n, k] = offset[n, g] + sum_i alpha[n, g, i]
  (2 b_i - 1)`` takes ``2^b`` values per (row, group), so it is a table per (group, row): ``TGS = g``,
  ``T_SG = d_out 2^b``, ``T_SN = 2^b``, tables ``(d_in / g, d_out, 2^b)`` fp16 built once by
  :func:`lowbit.core.formats.binary_code_values` (16 B per row and group at 3 bits and g = 128:
  0.125 B per weight more than the k + 1 coefficients, and no arithmetic per weight).

Codes are bit planes along the inputs (:mod:`lowbit.kernels.triton.common`); tables are fp16
(``2^b`` entries per column: 32 B per column at 4 bits, L1-resident).

**Mixed widths**: at prepare the columns of each width b are gathered into one segment (the storage
layout of :mod:`lowbit.core.storage` groups them the same way), padded to a multiple of 128 columns
(zero codes, zero table rows, activations masked), with their input indices; each segment is one
launch of the same kernel at its own width, all adding atomically into one fp32 ``y`` (the
activations are gathered through the index, so ``x`` is never permuted in memory). One launch per
width present (at most 4) was chosen over a single kernel looping over segments of different
constexpr widths: the same kernel, no per-tile width branch, and the launches are captured together
by CUDA graphs when decoding. Sparse outliers are added by the first segment's launch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor

from lowbit.core.formats import QuantizedWeight, binary_code_values

from .common import (
    PLANES,
    Config,
    Outliers,
    accumulate,
    add_outliers,
    as_activations,
    block_m,
    candidates,
    choose,
    grid_outliers,
    load_codes,
    load_x,
    output,
    pack_planes,
    pad_cols,
    store_y,
)
from .uniform import group_perm

PAD = 128  # columns of a mixed-width segment are padded to a multiple of this


@dataclass
class Segment:
    """Columns of one width in the kernel layout."""

    bits: int
    planes: list[Tensor]  # per plane (k_pad w / 32, d_out) int32
    tables: Tensor  # table: (k_pad, 2^b) fp16; binary: (d_in / g, d_out, 2^b) fp16
    cols: Tensor | None  # (k_pad,) int32 input column of each segment column, or None (all, in order)
    k: int  # columns in the segment (before padding)
    k_pad: int



@dataclass
class TableState:
    """The kernel layout of a ``table`` or ``binary`` weight: segments by width, outliers."""

    segments: list[Segment]
    outliers: Outliers | None
    group_size: int  # TGS: 1 for per-column tables, g for binary codes
    shape: tuple[int, int]



def prepare_table(qw: QuantizedWeight, device: torch.device | str | None = None) -> TableState:
    """Re-layout a ``table`` weight (one width, or per-column widths grouped into segments)."""
    dev = torch.device(device) if device is not None else qw.codes.device
    assert qw.tables is not None
    d_out, d_in = qw.shape
    codes, tables = qw.codes.to(dev), qw.tables.to(dev, torch.float16)
    segments = []
    if not isinstance(qw.bits, Tensor):
        b = int(qw.bits)
        segments.append(Segment(b, pack_planes(codes, b), tables[:, : 1 << b].contiguous(), None, d_in, d_in))
    else:
        widths = qw.bits.to(dev).long()
        for b in sorted(set(widths.tolist())):
            cols = (widths == b).nonzero().squeeze(1)
            k = cols.numel()
            k_pad = triton.cdiv(k, PAD) * PAD
            seg_codes = pad_cols(codes[:, cols].long(), k_pad)
            seg_tables = pad_cols(tables[cols, : 1 << b].T, k_pad).T.contiguous()
            seg_cols = pad_cols(cols[None].int(), k_pad)[0].contiguous()
            segments.append(Segment(b, pack_planes(seg_codes, b), seg_tables, seg_cols, k, k_pad))
    return TableState(segments, grid_outliers(qw, dev), 1, (d_out, d_in))


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
    seg = Segment(b, pack_planes(codes, b), tables, None if perm is None else perm.to(torch.int32), d_in, d_in)
    return TableState([seg], grid_outliers(qw, dev), gs, (d_out, d_in))


@triton.jit
def table_kernel(X, Y, Q0, Q1, T, PERM, PTR, OCOL, OVAL, M, N, K, K_PAD, stride_xm, T_SG, T_SN,
                 TGS: tl.constexpr, W0: tl.constexpr, W1: tl.constexpr, HAS_PERM: tl.constexpr,
                 HAS_OUT: tl.constexpr, ATOMIC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr):
    """``Y[m, n] (+)= sum_k X[m, perm(k)] T[(k // TGS) T_SG + n T_SN + q[k, n]]`` over this program's K
    tiles (``K`` valid columns of ``K_PAD``)."""
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    pid_m = tl.program_id(2)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < N
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = offs_m < M
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for t in range(pid_k, K_PAD // BLOCK_K, SPLIT_K):
        k0 = t * BLOCK_K
        offs_k = k0 + tl.arange(0, BLOCK_K)
        q = load_codes(Q0, Q1, k0, offs_n, n_mask, N, BLOCK_K, BLOCK_N, W0, W1)
        w = tl.load(T + (offs_k // TGS)[:, None] * T_SG + offs_n[None, :] * T_SN + q, mask=n_mask[None, :],
                    other=0.0).to(tl.float32)
        x = load_x(X, stride_xm, offs_m, m_mask, offs_k, K, PERM, HAS_PERM, BLOCK_M)
        acc = accumulate(acc, x, w, BLOCK_M)
    if HAS_OUT:
        acc = add_outliers(acc, X, stride_xm, offs_m, m_mask, offs_n, n_mask, PTR, OCOL, OVAL, pid_k == 0)
    store_y(Y, acc, offs_m, m_mask, offs_n, n_mask, N, ATOMIC)


def _launch(st: TableState, x: Tensor, c: Config) -> Tensor:
    m, n = x.shape[0], st.shape[0]
    bm = block_m(m)
    atomic = c.split_k > 1 or len(st.segments) > 1
    y = output(m, n, atomic, x)
    for i, seg in enumerate(st.segments):
        planes = PLANES[seg.bits]
        o = st.outliers if i == 0 else None
        ts = 1 << seg.bits
        t_sg, t_sn = (ts, 0) if st.group_size == 1 else (n * ts, ts)
        split = min(c.split_k, seg.k_pad // c.block_k)
        grid = (triton.cdiv(n, c.block_n), split, triton.cdiv(m, bm))
        table_kernel[grid](
            x, y, seg.planes[0], seg.planes[-1], seg.tables, seg.cols if seg.cols is not None else seg.tables,
            o.indptr if o else y, o.cols if o else y, o.delta if o else y, m, n, seg.k, seg.k_pad, x.stride(0),
            t_sg, t_sn, TGS=st.group_size, W0=planes[0], W1=planes[1] if len(planes) > 1 else 0,
            HAS_PERM=seg.cols is not None, HAS_OUT=o is not None, ATOMIC=atomic, BLOCK_M=bm, BLOCK_N=c.block_n,
            BLOCK_K=c.block_k, SPLIT_K=split, num_warps=c.num_warps, num_stages=c.num_stages)
    return y


def configs(st: TableState, m: int) -> list[Config]:
    """Tiles whose ``BLOCK_K`` divides every segment (and, for binary codes, fits the groups)."""
    k_pad = min(s.k_pad for s in st.segments)
    gs = st.group_size
    return candidates(m, k_pad, lambda bk: all(s.k_pad % bk == 0 for s in st.segments)
                      and (gs == 1 or bk % gs == 0 or gs % bk == 0))


def run(st: TableState, x: Tensor, config: Config | None = None) -> Tensor:
    """``x @ W_hat^T``: ``x`` ``(M, d_in)`` -> ``(M, d_out)`` in ``x``'s dtype (fp16 activations, fp32
    accumulation). ``config`` forces a launch configuration (tests)."""
    xa = as_activations(x)
    if config is None:
        key = ("table", *st.shape, st.group_size, tuple((s.bits, s.k_pad) for s in st.segments),
               st.outliers is not None, block_m(xa.shape[0]), xa.dtype)
        config = choose(key, configs(st, xa.shape[0]), lambda c: _launch(st, xa, c), xa.device)
    return _launch(st, xa, config).to(x.dtype)
