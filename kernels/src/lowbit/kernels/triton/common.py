"""Pieces shared by the Triton kernels: the block-interleaved code layout, code unpacking, activation
loads, sparse outliers in the same pass, and the per-process configuration tuner.

**Codes: words along the inputs of each output row, interleaved per block** (the uniform kernel's
layout, binary codes included as 1-bit planes). A b-bit code matrix ``(N, K)`` is cut along K into
blocks of ``KB`` inputs (a power of two dividing 128 and the group size). Each block of a row is ``WB =
KB / PER`` words, ``PER`` codes per word (:data:`PER`: 32 / b, and 16 for 3 bits); word ``j`` of block
``b`` holds at bit ``i w`` (``i = i' + h PER / 2``, ``h`` 0 or 1) the code of input ``k = b KB + 2 WB i'
+ 2 j + h``. The two codes at bits ``i' w`` and ``i' w + 16``, one f16x2 pair
(:func:`lowbit.kernels.triton.uniform.pair_codes`), are adjacent inputs, as a tensor-core operand
register holds them, and the ``2 WB`` inputs of a pair step ``i'`` are contiguous (since v12; until
then input ``b KB + i WB + j``). Words are stored ``(N, K / PER)`` row-major, each row padded to a
multiple of 16 words: a row's words are contiguous (``K``-contiguous per output row, as in GemLite and
Marlin's GEMV layout), so a program owning ``BLOCK_N`` rows streams ``BLOCK_N`` contiguous runs.
Unpacking is one shift and mask per code (per pair of codes on the tensor cores) and needs no
reshape. (Per-column tables pack their codes along the rows instead:
:mod:`lowbit.kernels.triton.column_tables`.) 3 bits are a 2-bit plane of int32 words and a 1-bit plane
of int16 words with the same ``PER = 16`` (exactly 3 bits per weight; both planes load with the same
tile shape).

**Tiles.** One program per ``BLOCK_N`` output rows (and ``BLOCK_M`` activation rows) loops over all of
K, ``GPI`` blocks (``BLOCK_K = GPI KB`` inputs) per iteration; blocks past K are masked (K need not
be a multiple of ``BLOCK_K``; the uniform GEMV masks only their codes, scales and offsets and reads the
last block's activations, unmasked). With ``split_k = 1`` one launch writes ``y`` in the activations' dtype
(no zero-fill, atomics or cast); with ``split_k > 1`` (chosen by the tuner, see :class:`Config`)
programs ``pid_k`` sum consecutive ranges of ``SPLIT_BLOCKS`` blocks and add into a zero-filled ``y``
(:func:`output`; so do the width segments of mixed column tables), or, with ``Config.tickets``, into a ``y``
not filled, whose first writer per tile each launch is the first program to arrive (:func:`store_y`).
A batch of one row is a GEMV on the CUDA cores: an fp32 ``(BLOCK_N, GPI, WB)`` accumulator gets
``w x`` elementwise, reduced over K once after the loop (no reduction per iteration), each code read in
place with a power of two chosen per bit position (:func:`lowbit.kernels.triton.uniform.biased_code`).
Larger batches dequantize pairs of codes in f16x2 and ``tl.dot`` them with the operands swapped (fp32
accumulation; :mod:`lowbit.kernels.triton.uniform`).

**Sparse outliers in the same pass** (SpQR, arXiv 2306.03078): CSR over output rows (row pointers
int32; per entry its row and column in 16 bits, read back as unsigned, and ``delta = value -
W_grid[r, c]`` in fp16). A program walks the entries of its ``BLOCK_N`` rows in chunks of
:func:`out_chunk` entries (independent gathers of ``x[col]``) and adds them to its rows with a masked
sum (GEMV) or a ``tl.dot`` against the delta-weighted one-hot ``(chunk, BLOCK_N)`` matrix (batches).
The first chunk's loads are issued before the main loop (:func:`outliers_begin`), so their chain of
latencies (row pointers, entries, activations) overlaps it; :func:`outliers_end` adds it after the
loop, then any further chunk (each waiting for its loads). With split K the programs of a row tile
take its chunks in turn. The uniform kernel's batches walk them in programs of their own instead, one
chunk each, which add into ``y`` as split K does (:func:`lowbit.kernels.triton.uniform.outlier_programs`).
Its layout also holds the entries in column order inside tiles of :data:`COL_TILE` rows
(``Outliers.by_col``), which its programs of a multiple of as many rows walk (:func:`outlier_args`): a
batch of ``M`` rows gathers ``M`` activations for each entry, one L2 sector each for entries far apart
along K, shared by neighbours in column order (H100, batch 16, 0.5% outliers: 43.8 -> 33.9 µs at 4096 x
11008; docs/results.md, v14).

**Tuning.** Configurations are cached per GPU model: ``benchmarks/gpu_kernels.py --sweep --write-tuned``
times every candidate (:func:`candidates`) of each format, shape and batch bucket the way the benchmark
times layers (weights rotated past L2, calls in one CUDA graph) and writes the fastest to a file under
:data:`TUNED_DIR` named after the GPU, shipped with the package. :func:`choose` reads that file on the
first call on a GPU; for a key (shape, batch bucket, format parameters, GPU) not in it, it times the
candidates the same way (:func:`lowbit.kernels.triton.timing.time_configs`: copies of the layer's state
past L2, one CUDA graph, at least 64 calls a replay) and keeps the fastest in a process-wide dict: on the
H100 its choices for 15 benchmark keys treated as untuned ran within 1% of the sweep's (the same
configuration for 14). Until session 21
it was ``triton.testing.do_bench`` (one call after an L2 flush, with its launch), whose choices took up to
3.3x the sweep's time (median 1.2x; docs/results.md, v11). Under Triton's interpreter (CPU tensors),
with ``LOWBIT_TRITON_TUNE=0``, or for a key first met while a CUDA graph is being captured (the first call
of a layer should come before), the first candidate is used.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import triton
import triton.language as tl
from torch import Tensor

from lowbit.core.formats import QuantizedWeight
from lowbit.kernels.triton.timing import past_l2, time_configs

log = logging.getLogger(__name__)

PLANES: dict[int, tuple[int, ...]] = {1: (1,), 2: (2,), 3: (2, 1), 4: (4,)}
PER: dict[int, int] = {1: 32, 2: 16, 3: 16, 4: 8}  # codes per word position
COL_TILE = 64  # rows per tile of the outliers' column-ordered copy (Outliers.by_col)
TUNED_DIR = Path(__file__).parent / "tuned"  # per-GPU configurations measured by benchmarks/gpu_kernels.py --sweep


# ---------------------------------------------------------------------------------------------- layout


def pad_cols(t: Tensor, k_pad: int, value: float = 0) -> Tensor:
    """``t`` ``(R, K)`` padded with ``value`` to ``(R, k_pad)`` columns."""
    return torch.nn.functional.pad(t, (0, k_pad - t.shape[1]), value=value)


def block_size(k: int, group_size: int | None = None) -> int:
    """``KB``: the largest power of two <= 128 dividing ``k`` (and ``group_size``); at least 32."""
    kb = math.gcd(k, 128 if group_size is None else math.gcd(group_size, 128))
    if kb < 32:
        raise ValueError(f"inputs ({k}) and groups ({group_size}) must be multiples of 32")
    return kb


def signed_bits(words: Tensor, bits: int, dtype: torch.dtype) -> Tensor:
    """Non-negative ``words`` below ``2^bits`` as the signed ``dtype`` integers of the same bits."""
    return torch.where(words >= 2 ** (bits - 1), words - 2**bits, words).to(dtype)


def pack_codes(codes: Tensor, bits: int, kb: int) -> list[Tensor]:
    """``codes`` ``(N, K)`` below ``2^bits`` (K a multiple of ``kb``) -> the planes of the layout in the
    module docstring: ``(N, K / PER)`` int32 (and for 3 bits the high bits ``(N, K / 16)`` int16), each
    row padded with zero words to a multiple of 16 words: a kernel taking the words per row as an
    argument sees it divisible by 16 and vectorizes the word loads (at 32 codes a word, 11,008 inputs
    in three 1-bit planes are 1,032 words)."""
    n, k = codes.shape
    per = PER[bits]
    wb = kb // per
    if k % kb or kb % per:
        raise ValueError(f"pack_codes needs K ({k}) a multiple of the block ({kb}) and of {per}")
    # [n, b, i', j, h] -> [n, b, h, i', j]: code i = h PER / 2 + i' of word j at bit i w below
    codes = codes.reshape(n, k // kb, per // 2, wb, 2).permute(0, 1, 4, 2, 3).reshape(n, k)
    c = codes.to(torch.int64).reshape(n, k // kb, per, wb)  # [n, b, i, j]
    out, shift = [], 0
    for w in PLANES[bits]:
        part = (c >> shift) & ((1 << w) - 1)
        words = (part << (w * torch.arange(per, device=c.device))[None, None, :, None]).sum(2)
        word_bits = per * w
        words = signed_bits(words.reshape(n, k // per), word_bits, torch.int32 if word_bits == 32 else torch.int16)
        out.append(torch.nn.functional.pad(words, (0, -(k // per) % 16)).contiguous())
        shift += w
    return out


def pack_scales(s: Tensor, b: Tensor) -> Tensor:
    """Scales ``s`` and offsets ``b`` ``(N, G)`` -> ``(N, G)`` int32 words, fp16 ``s`` in bits 0-15 and ``b`` in
    bits 16-31 (each row padded with zero words to a multiple of 4, the 16-byte row stride a TMA descriptor needs:
    scales as TMA boxes were measured and not kept, docs/results.md, v18, and every run had the padding): one 4-byte
    load for both, split by :func:`halves`. Triton copies 4-byte loads through shared memory with ``cp.async`` in a
    pipelined loop; the uniform GEMV's two 2-byte tiles were plain loads, moved into the loop's layout through shared
    memory in two rounds with barriers between them (offline SASS: 5 barriers an iteration in the loop body before, 2
    now; on the H100 the 4-bit GEMV went from 13.30 to 12.31 µs at 4096x11008 with this and
    :func:`lowbit.kernels.triton.uniform.biased_code`, docs/results.md, v18)."""
    bits = [t.half().contiguous().view(torch.int16).to(torch.int64) & 0xFFFF for t in (s, b)]
    words = signed_bits(bits[0] | (bits[1] << 16), 32, torch.int32)
    return torch.nn.functional.pad(words, (0, -s.shape[1] % 4)).contiguous()


@dataclass
class Outliers:
    """Sparse outliers of one weight in the kernels' CSR layout (see the module docstring)."""

    indptr: Tensor  # (N + 1,) int32
    rows: Tensor  # (nnz,) int16, unsigned rows < 65536
    cols: Tensor  # (nnz,) int16, unsigned columns < 65536
    delta: Tensor  # (nnz,) fp16: outlier value minus the quantized grid value it replaces
    tile_max: dict[int, int]  # rows per tile (1, 2, 4 .. 128) -> the most entries of one tile of as many rows
    by_col: list[Tensor] | None = None  # [rows, cols, delta] in column order inside tiles of COL_TILE rows


def tile_max(indptr: Tensor, n_rows: int) -> dict[int, int]:
    """For tiles of ``bn = 1, 2, 4 .. 128`` consecutive rows (as the kernels' programs own them), the most
    entries of one tile: ``max_t indptr[min((t + 1) bn, n_rows)] - indptr[t bn]`` (once, at prepare)."""
    out = {}
    for bn in (1 << i for i in range(8)):
        start = torch.arange(0, n_rows, bn, device=indptr.device)
        out[bn] = int((indptr[torch.clamp(start + bn, max=n_rows)] - indptr[start]).max()) if n_rows else 0
    return out


def entries(rows: Tensor, cols: Tensor, delta: Tensor, tile: int) -> list[Tensor]:
    """Entries ``(rows[i], cols[i], delta[i])`` sorted by ``(rows // tile, cols)``, in the kernels' dtypes
    (16-bit rows and columns, fp16 deltas). ``tile = 1``: row order (CSR)."""
    order = torch.argsort((rows // tile) * 65536 + cols)
    return [signed_bits(rows[order], 16, torch.int16), signed_bits(cols[order], 16, torch.int16),
            delta[order].to(torch.float16)]


def outliers_csr(rows: Tensor, cols: Tensor, delta: Tensor, n_rows: int, by_col: bool = False) -> Outliers:
    """CSR of entries ``(rows[i], cols[i], delta[i])`` over ``n_rows`` output rows, sorted by row (columns
    below ``2^16``); ``by_col``: also a copy in column order inside tiles of :data:`COL_TILE` rows, for the walks
    of tiles of a multiple of as many rows (:func:`outlier_args`)."""
    rows, cols = rows.long(), cols.long()
    indptr = torch.zeros(n_rows + 1, dtype=torch.int64, device=rows.device)
    indptr[1:] = torch.bincount(rows, minlength=n_rows).cumsum(0)
    return Outliers(indptr.to(torch.int32), *entries(rows, cols, delta, 1), tile_max(indptr, n_rows),
                    entries(rows, cols, delta, COL_TILE) if by_col else None)


def grid_outliers(qw: QuantizedWeight, device: torch.device, by_col: bool = False) -> Outliers | None:
    """The sparse outliers of ``qw`` as deltas over the grid values they replace (from the dense
    reference weight without outliers: a one-time cost at prepare), on ``device`` (``by_col``: with the
    column-ordered copy, :func:`outliers_csr`); None without any."""
    o = qw.outliers
    if o is None or not o.nnz:
        return None
    if max(qw.shape) > 1 << 16:
        raise ValueError(f"the Triton kernels store outlier rows and columns in 16 bits: a {qw.shape[0]} x "
                         f"{qw.shape[1]} weight with outliers is too large")
    rows, cols = o.rows.to(device).long(), o.cols.to(device).long()
    grid = replace(qw, outliers=None).dequantize().to(device)[rows, cols]
    return outliers_csr(rows, cols, o.values.to(device).float() - grid, qw.shape[0], by_col)


def outlier_args(o: Outliers | None, dummy: Tensor, block_n: int = 1,
                 bm: int = 1) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The four outlier tensors of a launch whose programs own ``block_n`` rows and ``bm`` rows of ``x``
    (``dummy`` for each when there are none): for batches (``bm > 1``), the entries in column order inside tiles
    where ``o`` has that copy and ``block_n`` is a multiple of :data:`COL_TILE` (the row pointers at multiples
    of ``COL_TILE`` hold for both orders), else in row order. A GEMV's walk sums each row's entries as a
    difference of prefix sums (:func:`outlier_rows`), which needs row order."""
    if o is None:
        return dummy, dummy, dummy, dummy
    if o.by_col is not None and bm > 1 and block_n % COL_TILE == 0:
        return o.indptr, *o.by_col
    return o.indptr, o.rows, o.cols, o.delta


# ------------------------------------------------------------------------------------------ jit helpers


@triton.jit
def load_words(Q, rows, row_words, wcol, ok):
    """``(BLOCK_N, GPI, WB)`` words ``Q[rows, wcol]`` of a ``(N, row_words)`` tensor (``ok``: valid
    blocks, ``(GPI,)``), as int32."""
    ptr = Q + rows[:, None, None] * row_words + wcol[None, :, :]
    return tl.load(ptr, mask=ok[None, :, None], other=0).to(tl.int32)


@triton.jit
def load_x(X, stride_xm, offs_m, m_mask, k, ok, PERM, HAS_PERM: tl.constexpr):
    """Activations ``(BLOCK_M, GPI, WB)`` of the ``(GPI, WB)`` inputs ``k`` (columns ``PERM[k]`` when
    permuted), zero where not ``ok``, in the activations' dtype."""
    if HAS_PERM:
        k = tl.load(PERM + k, mask=ok, other=0)
    return tl.load(X + offs_m[:, None, None] * stride_xm + k[None, :, :], mask=m_mask[:, None, None] & ok[None, :, :],
                   other=0.0)


@triton.jit
def mac(acc, x, w, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, C: tl.constexpr):
    """One step's contribution. GEMV: ``acc (BLOCK_N, GPI, WB) += w x`` (fp32, ``x`` ``(1, GPI, WB)``);
    batches: ``acc^T (BLOCK_N, BLOCK_M) += w (BLOCK_N, C) @ x (BLOCK_M, C)^T`` in fp16 (fp32 accumulation), the
    weights the register operand (``wgmma`` on Hopper for tiles of 64 rows), as in the uniform kernel's batches."""
    if BLOCK_M == 1:
        acc += w * x.to(tl.float32)
    else:
        w2 = tl.reshape(w, (BLOCK_N, C)).to(x.dtype)
        acc = tl.dot(w2, tl.trans(tl.reshape(x, (BLOCK_M, C))), acc)
    return acc


@triton.jit
def finish(acc, BLOCK_M: tl.constexpr):
    """The ``(BLOCK_M, BLOCK_N)`` fp32 result of the main loop (GEMV: the one reduction over K; batches: the
    transposed accumulator of :func:`mac`)."""
    if BLOCK_M == 1:
        acc = tl.sum(tl.sum(acc, axis=2), axis=1)[None, :]
    else:
        acc = tl.trans(acc)
    return acc


@triton.jit
def outlier_entries(OROW, OCOL, OVAL, c0, end, CHUNK: tl.constexpr):
    """Entries ``c0 .. c0 + CHUNK`` (those before ``end``) of the CSR: their rows, columns and deltas, each
    ``(CHUNK,)`` (masked entries: row ``0xFFFF``, column 0, delta 0)."""
    e = c0 + tl.arange(0, CHUNK)
    ok = e < end
    r = tl.load(OROW + e, mask=ok, other=-1).to(tl.int32) & 0xFFFF
    col = tl.load(OCOL + e, mask=ok, other=0).to(tl.int32) & 0xFFFF
    d = tl.load(OVAL + e, mask=ok, other=0.0)
    return r, col, d


@triton.jit
def outlier_acts(X, stride_xm, offs_m, m_mask, col, c0, end, CHUNK: tl.constexpr):
    """The activations ``x[m, col_i]`` ``(BLOCK_M, CHUNK)`` of the chunk at ``c0`` (independent gathers; 0 for
    masked entries, whose zero deltas would turn a non-finite ``x[m, 0]`` into NaN in a batch's ``tl.dot``)."""
    ok = c0 + tl.arange(0, CHUNK) < end
    return tl.load(X + offs_m[:, None] * stride_xm + col[None, :], mask=m_mask[:, None] & ok[None, :], other=0.0)


@triton.jit
def outliers_begin(offs_n, N, PTR, OROW, OCOL, OVAL, part, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr,
                   PARTS: tl.constexpr):
    """The start of a program's outlier walk, called before its main loop so that the entries' loads
    overlap the loop. The ``PARTS`` programs of a row tile (split K, each adding its partial into ``y``)
    share its chunks: program ``part`` takes chunks ``part, part + PARTS, ..`` (:func:`outliers_end`).
    Returns where this program's first chunk starts, the end of the tile's entries, and that chunk's rows,
    columns and deltas (:func:`outlier_entries`).

    The activations of the chunk are gathered after the loop (:func:`outliers_end`), not here: a warp
    issues in order, so a gather here waits for the columns from memory before the loop's first loads are
    issued, a second dependent round trip after the row pointers'. On the H100 the 4-bit GEMV with 0.5%
    outliers took 7.51 / 15.62 / 15.77 µs against 8.39 / 15.67 / 16.10 with the gather here, both swept
    (4096² / 4096x11008 / 11008x4096, docs/results.md, v17)."""
    n0 = tl.min(offs_n, axis=0)
    first = tl.load(PTR + n0) + part * CHUNK
    end = tl.load(PTR + tl.minimum(n0 + BLOCK_N, N))
    r, col, d = outlier_entries(OROW, OCOL, OVAL, first, end, CHUNK)
    return first, end, r, d, col


@triton.jit
def outlier_add(acc, r, d, xv, offs_n):
    """Batches: ``acc[m, n] += sum_i [r_i = n] d_i x[m, i]`` for one chunk, a ``tl.dot`` against the
    delta-weighted one-hot ``(CHUNK, BLOCK_N)`` matrix."""
    onehot = tl.where(r[:, None] == offs_n[None, :], d[:, None], 0.0).to(xv.dtype)  # (CHUNK, BLOCK_N)
    return tl.dot(xv, onehot, acc)


@triton.jit
def outlier_rows(acc, d, xv, c0, starts, ends, CHUNK: tl.constexpr):
    """GEMV: ``acc[0, n] += sum_{i in row n} d_i x_i`` for the chunk at ``c0``, as a difference of the prefix sums
    ``P_j = sum_{i < j} d_i x_i`` of its products: ``P_b - P_a``, where row ``n`` holds entries ``starts[n] ..
    ends[n]`` of the CSR (row order), clipped to the chunk to ``a .. b``. One scan and two gathers of ``CHUNK``
    values, where a masked sum over the tile's rows costs ``BLOCK_N x CHUNK`` selects. On the H100 the 4-bit GEMV
    with 0.5% outliers took 0.97-0.99x the masked sum's time at the same configurations, and swept 7.41 / 14.40 /
    15.11 µs, 8.7-12.6% over the layer without outliers (4096² / 4096x11008 / 11008x4096, docs/results.md, v17)."""
    cs = tl.cumsum(tl.reshape(xv.to(tl.float32) * d.to(tl.float32)[None, :], (CHUNK,)), axis=0)
    a = tl.minimum(tl.maximum(starts - c0, 0), CHUNK)
    b = tl.minimum(tl.maximum(ends - c0, 0), CHUNK)
    hi = tl.where(b > 0, tl.gather(cs, tl.maximum(b - 1, 0), axis=0), 0.0)
    lo = tl.where(a > 0, tl.gather(cs, tl.maximum(a - 1, 0), axis=0), 0.0)
    return acc + (hi - lo)[None, :]


@triton.jit
def add_chunk(acc, r, d, xv, c0, offs_n, starts, ends, BLOCK_M: tl.constexpr, CHUNK: tl.constexpr):
    """One chunk's entries into ``acc``: by prefix sums (GEMV, :func:`outlier_rows`) or a one-hot ``tl.dot``
    (batches, :func:`outlier_add`)."""
    if BLOCK_M == 1:
        acc = outlier_rows(acc, d, xv, c0, starts, ends, CHUNK)
    else:
        acc = outlier_add(acc, r, d, xv, offs_n)
    return acc


@triton.jit
def outliers_end(acc, first, end, r, d, col, X, stride_xm, offs_m, m_mask, offs_n, N, PTR, OROW, OCOL, OVAL,
                 BLOCK_M: tl.constexpr, CHUNK: tl.constexpr, PARTS: tl.constexpr):
    """``acc[m, n] += sum_{i in row n} delta_i x[m, col_i]`` over this program's chunks of its rows' entries
    (CSR, see above): the chunk :func:`outliers_begin` loaded at ``first`` (its activations gathered now),
    then every ``PARTS``-th further chunk (each waits for its loads), each by :func:`add_chunk`."""
    starts = offs_n  # (batches: unused)
    ends = offs_n
    if BLOCK_M == 1:  # the tile's row pointers (cached: outliers_begin read them)
        starts = tl.load(PTR + tl.minimum(offs_n, N))
        ends = tl.load(PTR + tl.minimum(offs_n + 1, N))
    acc = add_chunk(acc, r, d, outlier_acts(X, stride_xm, offs_m, m_mask, col, first, end, CHUNK), first, offs_n,
                    starts, ends, BLOCK_M, CHUNK)
    for c0 in range(first + PARTS * CHUNK, end, PARTS * CHUNK):
        r2, col2, d2 = outlier_entries(OROW, OCOL, OVAL, c0, end, CHUNK)
        acc = add_chunk(acc, r2, d2, outlier_acts(X, stride_xm, offs_m, m_mask, col2, c0, end, CHUNK), c0, offs_n,
                        starts, ends, BLOCK_M, CHUNK)
    return acc


@triton.jit
def add_y(ptr, v, mask):
    """Add the ``(BLOCK_M, BLOCK_N)`` tile ``v`` into ``y`` atomically (fire and forget).

    A GEMV tile (``BLOCK_M == 1``) of 4-64 rows has fewer outputs than the program has threads, so Triton
    gives its atomic one output a thread, and an fp16 atomic add of one element compiles to a loop of
    compare-and-swap (``ATOMG.E.CAS``: a load and a CAS round trip to L2 per program, more where programs
    collide; sm_90 adds fp16 natively only in pairs and wider). The tile is therefore broadcast to
    ``R x BLOCK_N`` (``R = 1024 / BLOCK_N``), only its first row unmasked: with at least two elements a
    thread Triton's atomic becomes one vector reduction of contiguous outputs (``REDG.E.ADD.F16x2..x8``,
    fire and forget; sm_90 SASS, ``benchmarks/kernel_sass.py --atomics``)."""
    if v.shape[0] == 1:
        BN: tl.constexpr = v.shape[1]
        R: tl.constexpr = 1024 // BN if BN < 1024 else 1
        first = (tl.arange(0, R) == 0)[:, None]
        tl.atomic_add(tl.broadcast_to(ptr, (R, BN)), tl.broadcast_to(v, (R, BN)), mask=first & mask, sem="relaxed")
    else:
        tl.atomic_add(ptr, v, mask=mask, sem="relaxed")


@triton.jit
def store_y(Y, acc, offs_m, m_mask, offs_n, N, PARTS: tl.constexpr, T, TICKETS: tl.constexpr):
    """Write the ``(BLOCK_M, BLOCK_N)`` tile in ``Y``'s dtype; with ``PARTS`` > 1 programs adding into each
    output (split K, segments, outlier programs: ``program_id(2)``) add it (:func:`add_y`) into a
    zero-filled ``y`` or, with ``TICKETS`` (``Config.tickets``), one not filled: the first of them to arrive
    stores its partial, and the others add theirs after it.

    Tickets (``T``: an int32 word pair a tile ``t = program_id(0) + program_id(1) num_programs(0)``, zero
    before a device's first launch, :func:`tickets`): ``T[2t] = g 2^16 + a`` counts the ``a`` programs
    of the current launch arrived here and its generation ``g``. A program takes ``v = T[2t]++``; the
    last to arrive (``a = PARTS - 1``) starts the next generation, ``T[2t] += 2^16 - PARTS`` (``a`` back to
    0, nothing reset). The first (``a = 0``) stores, then releases ``T[2t + 1] = g + 1 (mod 2^16)``; the
    others wait to acquire that mark before adding. The first arrival is running, so the wait ends.
    Launches that share the words must not overlap: an eager launch on a second stream waits for the first
    (:func:`tickets`), and graphs holding them must not be replayed on two streams at once. A program
    waits for one or two round trips to L2 more than with the fill, which costs a graph node (about 1.3 µs
    on the H100): the tuner chooses (the v19 change, docs/results.md)."""
    ptr = Y + offs_m[:, None] * N + offs_n[None, :]
    mask = m_mask[:, None] & (offs_n < N)[None, :]
    v = acc.to(Y.dtype.element_ty)
    if PARTS == 1:
        tl.store(ptr, v, mask=mask)
    elif TICKETS:
        t = T + 2 * (tl.program_id(0) + tl.program_id(1) * tl.num_programs(0))
        ticket = tl.atomic_add(t, 1, sem="relaxed")
        arrived = ticket & 0xFFFF
        mark = ((ticket >> 16) + 1) & 0xFFFF
        if arrived == PARTS - 1:
            tl.atomic_add(t, 0x10000 - PARTS, sem="relaxed")
        if arrived == 0:
            tl.store(ptr, v, mask=mask)
            tl.debug_barrier()  # every thread's stores before the release
            tl.atomic_xchg(t + 1, mark, sem="release")
        else:
            seen = tl.atomic_add(t + 1, 0, sem="acquire")
            while seen != mark:
                seen = tl.atomic_add(t + 1, 0, sem="acquire")
            add_y(ptr, v, mask)
    else:
        add_y(ptr, v, mask)


# ------------------------------------------------------------------------------------------------ launch


@dataclass(frozen=True)
class Config:
    """One launch configuration: output rows per program, word positions per row per iteration
    (``BLOCK_K = words PER``: 4-byte words, so the bytes in flight per row do not depend on the
    width), warps, pipeline stages (GEMVs, whose loads Triton does not pipeline, read them through
    :func:`loads_ahead`), and ``split_k``: programs sharing a row tile along K (each sums a
    contiguous range of blocks and adds its partial into ``y`` with an fp16 atomic add; ``y`` is
    zero-filled first). Split K gives a layer with few row tiles (4096 rows at batch 16, or a long K)
    enough programs to fill the GPU; the fill is a graph node of its own, 1.2-1.8 µs a call on the H100,
    inside the times the tuner compares (docs/results.md, v15). ``tma`` (the uniform kernel; column tables'
    GEMVs): the code words come through the tensor memory accelerator, ``num_stages`` boxes in flight
    (:func:`tma_words`). ``tickets``: the programs adding into each output take tickets instead, and ``y``
    is not zero-filled (:func:`store_y`): no fill, but each program waits at its end for a ticket, and all
    but the first then for the first's mark, which costs more than the fill where many short programs run in
    waves (on the H100 the batches' outlier programs, mixed-width tables at 11008 x 4096; the per-GPU file
    takes tickets at 29 of its 72 keys, docs/results.md, v19)."""

    block_n: int
    words: int
    num_warps: int = 4
    num_stages: int = 2
    split_k: int = 1
    tma: bool = False
    tickets: bool = False


# GEMV: the session-12 list (2-8 KiB of codes per program and iteration, 256-1024 programs on the
# 4096-row layers) and configurations with several rows per thread for the same inputs (each
# activation loaded and converted once for all of them: 4.3-4.7 instructions per 4-bit code in the
# compiled uniform loop against 5.3-6.1 with fewer rows per thread, docs/results/kernels/sass_v5.json)
# and so few row tiles, split along K for >= 2 programs per SM; and 8- and 16-warp programs
# of 8-16 rows (about 32 warps an SM on the 4096-row layers: the uniform GEMV's 2- and 4-bit layers ran
# 1.0-1.1x faster with them on the H100, session 15; the 2-stage one, which prefetches, for 4-bit). The
# H100's sweep chose from all (docs/results.md). Its chosen ones split along K (8 rows on 8 warps split by
# 2 and 4, 256 columns on 16 warps split by 2), tried once split-K GEMVs added with vector reductions
# (session 21), were chosen by no sweep and are not candidates.
# Batches: tl.dot tiles of 16-64 rows, split along K when the row tiles alone are fewer than about two
# per SM.
GEMV_CONFIGS = [Config(16, 128, 8, 2), Config(16, 64, 4, 3), Config(8, 128, 4, 2), Config(4, 128, 2, 3),
                Config(32, 32, 4, 4), Config(32, 64, 4, 3, 2), Config(32, 64, 4, 3, 4), Config(64, 32, 2, 3, 8),
                Config(16, 32, 2, 3, 2), Config(16, 256, 8, 2), Config(8, 256, 4, 2), Config(16, 128, 8, 2, 2),
                Config(16, 128, 8, 1), Config(4, 256, 2, 2), Config(8, 128, 8, 1), Config(16, 128, 16, 1),
                Config(8, 128, 8, 2)]
DOT_CONFIGS = [Config(32, 32, 4, 2), Config(64, 32, 4, 3), Config(32, 64, 8, 2), Config(16, 32, 4, 3),
               Config(32, 32, 4, 3, 4), Config(16, 32, 4, 3, 2), Config(64, 32, 4, 3, 8), Config(32, 64, 4, 3, 8)]
# Tensor-core tiles with the weights as the register operand (uniform batches): 64 or 128 rows (one
# Hopper wgmma per warpgroup), split along K where 64-row tiles alone are fewer than the SMs (4096 rows:
# 64 tiles); 32 rows fall back to mma.sync. The last eight (session 22, after the paired layout) were
# each chosen by one of the H100's batch-16 sweeps (8 words: one block an iteration at 2 and 3 bits); the
# others tried with them were chosen by none (docs/results.md, v12). Padded to 16 rows, a batch of one was
# 1.2-2.4x slower than the GEMV with these at every benchmark shape on the H100 (docs/results.md), so it is
# not a candidate.
# Uniform GEMVs with their words by TMA (sm_90): the best of session 26's prototype on the H100, (8, 128, 4, 3),
# the configurations around it that its first sweep chose (fewer warps a program than the register loads'), and
# their neighbours (docs/results.md, v16).
TMA_GEMV_CONFIGS = [Config(bn, w, nw, ns, tma=True) for bn, w, nw, ns in (
    (16, 128, 4, 3), (4, 128, 2, 3), (8, 128, 4, 3), (8, 256, 4, 3), (16, 128, 8, 3), (8, 128, 4, 2), (16, 128, 4, 4),
    (16, 256, 4, 3), (32, 128, 4, 3), (8, 128, 2, 3), (4, 256, 2, 3), (16, 128, 2, 3))]
TC_CONFIGS = [Config(64, 32, 4, 3, 1), Config(64, 32, 4, 3, 2), Config(64, 32, 4, 3, 4), Config(64, 64, 4, 3, 4),
              Config(128, 32, 8, 3, 2), Config(128, 32, 4, 3, 4), Config(32, 32, 4, 3, 4), Config(64, 16, 4, 4, 8),
              Config(64, 16, 4, 3, 8), Config(64, 16, 4, 4, 4), Config(128, 16, 8, 4, 4), Config(128, 16, 8, 4, 8),
              Config(64, 8, 4, 3, 8), Config(64, 16, 4, 2, 8), Config(64, 16, 4, 3, 4), Config(128, 8, 8, 3, 8)]
TMA_TC_CONFIGS = [replace(c, tma=True) for c in TC_CONFIGS]  # each tile with its words through TMA (v16)


def block_m(m: int) -> int:
    """Rows of x per program: 1 (GEMV) for one row, else the power of two >= m, at least 16 (``tl.dot``)."""
    return 1 if m == 1 else max(16, triton.next_power_of_2(m))


def blocks_per_iter(c: Config, per: int, kb: int, n_blocks: int, bm: int, shared: int | None = None) -> int:
    """``GPI``: blocks of ``kb`` inputs per iteration for ``c`` and ``bm`` rows of x per program (a power of
    two, at most the blocks there are rounded up; for ``tl.dot`` at least 16 inputs per pair of shifts,
    :func:`pack_codes`). ``shared``: the bytes of shared memory a program may
    use (:func:`max_shared`); a batch's ``GPI`` is halved (not below the ``tl.dot`` minimum) while its
    pipelined fp16 activation tiles, ``num_stages x GPI kb x bm`` values, would take more than that less
    32 KiB (at 1 bit, 32 codes a word, 32 words are 1,024 inputs: 384 KiB at 64 rows and 3 stages)."""
    gpi = max(1, c.words * per // kb)
    gpi = min(gpi, triton.next_power_of_2(n_blocks))
    if bm > 1:
        least = triton.cdiv(16, kb // per * 2)
        gpi = max(gpi, least)
        while shared is not None and gpi > least and c.num_stages * gpi * kb * bm * 2 > shared - 32768:
            gpi //= 2
    return gpi


@functools.cache
def max_shared(device_index: int) -> int:
    """Shared memory a program may use on CUDA device ``device_index``, in bytes (Triton's own limit)."""
    return int(triton.runtime.driver.active.utils.get_device_properties(device_index)["max_shared_mem"])


def candidates(m: int, split: bool = True, tensor_core: bool = False) -> list[Config]:
    """The configurations tried for ``m`` activation rows (the first is the untuned default); without
    ``split`` only those of ``split_k = 1`` (kernels that always sum all of K in one program);
    ``tensor_core``: the uniform kernel's, whose batches use :data:`TC_CONFIGS` (weights-as-``A`` tiles) and
    whose GEMV also tries :data:`TMA_GEMV_CONFIGS` and whose batches try each tile with its words through TMA
    too (on the H100 0.94-0.99x the time at the configurations the batch-16 sweeps had chosen, v16); with
    tickets too (:func:`with_tickets`)."""
    if m == 1:
        configs = GEMV_CONFIGS + TMA_GEMV_CONFIGS if tensor_core else GEMV_CONFIGS
    else:
        configs = TC_CONFIGS + TMA_TC_CONFIGS if tensor_core else DOT_CONFIGS
    return with_tickets([c for c in configs if split or c.split_k == 1])


def with_tickets(configs: list[Config], segments: int = 1) -> list[Config]:
    """``configs``, then each whose programs add into each output (split K, or the ``segments`` of mixed
    column tables) with tickets (:func:`store_y`)."""
    return configs + [replace(c, tickets=True) for c in configs if c.split_k * segments > 1]


def out_chunk(block_n: int, o: Outliers | None = None) -> int:
    """Outlier entries per chunk of the walk (:func:`outliers_begin`): enough for the fullest tile of
    ``block_n`` rows (a power of two, at least 16), at most ``8192 / BLOCK_N`` (64..1024; batch tiles keep
    the first chunk's entries in registers through the loop). A batch's one-hot product costs
    ``BLOCK_N x CHUNK`` operations whatever the entries, so the chunk is no larger than the entries need:
    at 0.5% outliers an 8-row tile of a 4096 x 4096 layer holds about 164 entries, a chunk of 256 against
    1024 without this bound. Tiles with more entries than the bound (longer rows, more rows) walk further
    chunks after the loop, each waiting for its loads."""
    cap = min(1024, max(64, 8192 // block_n))
    if o is None:
        return cap
    most = o.tile_max.get(block_n, cap)
    return min(cap, max(16, triton.next_power_of_2(max(most, 1))))


def loads_ahead(c: Config, bm: int) -> bool:
    """Whether a GEMV (``bm == 1``) loads the next iteration's codes before this iteration's arithmetic:
    configurations of 2 or more stages do, 1 stage loads each iteration's codes when it starts. Triton's
    pipeliner leaves loads that feed no ``tl.dot`` alone under the kernel's ``num_stages``, so this is the
    kernels' own prefetch; the tuner chooses per shape (docs/results.md). (A loop written ``tl.range(..,
    num_stages=S)`` is pipelined through shared memory, ``cp.async``: the uniform GEMV's best configurations
    then ran 1.07-1.39x slower on the H100, v15.) The uniform GEMV unrolls its loop by two over two buffers used
    in turn, so that no loaded register is copied at the loop's end (a copy waits for its load); the
    table and codebook GEMVs copy the next buffer into the current one, as they measured no faster with
    two buffers on the H100."""
    return bm == 1 and c.num_stages > 1


def gather_stages(c: Config, bm: int) -> int:
    """Pipeline stages of a kernel that gathers its weights from a table (codebooks): ``c``'s for a GEMV,
    1 for ``tl.dot`` batches, whose software pipeliner turned ``tl.load`` gathers into ``cp.async`` copies,
    which bypass L1 and so read every table entry from L2 (AQLM 2x8 at batch 16 took 175 us on a 4096 x
    4096 layer against 19 us at batch 1). Since v14 the batches gather by inline loads, which the pipeliner
    leaves alone; pipelining their codes' and activations' loads was no faster (docs/results.md, v14)."""
    return c.num_stages if bm == 1 else 1


def output(m: int, n: int, grid: tuple[int, ...], like: Tensor, c: Config,
           zeroed: bool = False) -> tuple[Tensor, Tensor]:
    """The ``(m, n)`` output of a launch ``grid`` (row tiles, row blocks of ``x``, parts) at ``c``, and its
    ticket words (:func:`tickets`; ``y`` as a placeholder without tickets). In ``like``'s dtype, or where the
    ``grid[2]`` > 1 parts add their partials into each output (split K, the segments of mixed column tables,
    outlier programs) in fp32 for bf16 activations: a bf16 partial keeps 8 bits, and Triton's interpreter has
    no bf16 atomic add (the launch returns ``y.to(like.dtype)``, a cast only in that case); zero-filled then,
    unless they take tickets or a kernel launched before them zeroes it (``zeroed``)."""
    if grid[2] == 1:
        y = torch.empty(m, n, dtype=like.dtype, device=like.device)
        return y, y
    dtype = torch.float32 if like.dtype == torch.bfloat16 else like.dtype
    y = (torch.empty if zeroed or c.tickets else torch.zeros)(m, n, dtype=dtype, device=like.device)
    return y, tickets(grid, like) if c.tickets else y


_TICKETS: dict[torch.device, list[Tensor]] = {}  # device -> its ticket words, the largest last
_CAPTURED: list[Tensor] = []  # ticket words of launches captured in CUDA graphs, kept for their replays
_STREAM: dict[torch.device, torch.cuda.Stream] = {}  # device -> the stream of its last ticketed launch


def tickets(grid: tuple[int, ...], like: Tensor) -> Tensor:
    """The int32 ticket words of :func:`store_y` for a launch ``grid`` (row tiles, row blocks of ``x``,
    parts) on ``like``'s device: two a tile, shared by the device's launches, which leave them as valid as
    they found them (zero at first). A launch with more tiles than the device's words gets new ones,
    zero-filled, and the old ones stay allocated for the CUDA graphs that hold them. A launch being captured
    in a graph that needs new ones gets words of its own, which each replay zeroes first (the capture runs
    nothing, so they are never shared with launches outside the graph). Launches that share the words must
    not overlap, so an eager launch on another stream than the device's last ticketed one first waits for
    that stream's work (:func:`after_last_stream`)."""
    capturing = like.is_cuda and torch.cuda.is_current_stream_capturing()
    if like.is_cuda and not capturing:
        after_last_stream(like.device)
    need = 2 * grid[0] * grid[1]
    have = _TICKETS.setdefault(like.device, [])
    if have and have[-1].numel() >= need:
        return have[-1]
    words = torch.zeros(max(need, 1 << 14), dtype=torch.int32, device=like.device)
    (_CAPTURED if capturing else have).append(words)
    return words


def after_last_stream(device: torch.device) -> None:
    """Make ``device``'s current stream wait for the work queued so far on the stream of its last ticketed
    launch, where that was another stream (eager launches only: graphs sharing the words must not be
    replayed on two streams at once)."""
    stream = torch.cuda.current_stream(device)
    last = _STREAM.get(device)
    if last is not None and last != stream:
        stream.wait_stream(last)
    _STREAM[device] = stream


def split_blocks(n_blocks: int, gpi: int, split_k: int) -> int:
    """Blocks summed by each of ``split_k`` programs along K: a multiple of ``gpi``."""
    return triton.cdiv(triton.cdiv(n_blocks, split_k), gpi) * gpi


_BEST: dict[str, Config] = {}  # key_text((*key, gpu)) -> configuration
_LOADED: set[str] = set()


def key_text(key: tuple) -> str:
    """A tuning key as stored in the per-GPU files (and the benchmark's JSON): its parts joined by spaces."""
    return " ".join(map(str, key))


def tuned_path(gpu: str) -> Path:
    """The file of configurations measured on ``gpu`` (a device name, e.g. "NVIDIA H100 80GB HBM3")."""
    return TUNED_DIR / (re.sub(r"[^A-Za-z0-9]+", "_", gpu).strip("_").lower() + ".json")


def load_tuned(gpu: str) -> dict[str, Config]:
    """``key text -> Config`` measured on ``gpu`` by ``benchmarks/gpu_kernels.py --sweep`` (empty without a file)."""
    path = tuned_path(gpu)
    if not path.is_file():
        return {}
    return {k: Config(**v) for k, v in json.loads(path.read_text()).items()}


def choose(key: tuple, configs: Sequence[Config], launch: Callable[[object, Config], object], st: object,
           device: torch.device) -> Config:
    """The configuration for ``key`` on this GPU: the one measured for it on this GPU model (file under
    :data:`TUNED_DIR`), else the fastest of ``configs`` for ``launch(st, config)`` timed once per process
    as the benchmark's sweep times them (:func:`time_configs` over :func:`past_l2` copies of ``st``); the
    first on the CPU, with tuning off, or for a key first met during a CUDA graph capture (which cannot
    time: the configuration known for the key otherwise, as graphed decoding captures layers tuned by
    its eager warm-up)."""
    if device.type != "cuda" or len(configs) == 1 or os.environ.get("LOWBIT_TRITON_TUNE") == "0":
        return configs[0]
    gpu = torch.cuda.get_device_name(device)
    full = key_text((*key, gpu))
    if gpu not in _LOADED:
        _LOADED.add(gpu)
        for k, c in load_tuned(gpu).items():
            _BEST.setdefault(k, c)
    best = _BEST.get(full)
    if best is None and torch.cuda.is_current_stream_capturing():
        return configs[0]
    if best is None:
        states = past_l2(st, device)
        times = time_configs(configs, launch, states, replays=5)
        del states
        best = configs[min(range(len(configs)), key=times.__getitem__)]
        _BEST[full] = best
        log.info("tuned %s: %s (%.2f us)", key, best, min(times))
    return best


def run_tuned(st: object, x: Tensor, tuning: Callable[[object, Tensor], tuple[tuple, list[Config]]],
              launch: Callable[[object, Tensor, Config], Tensor], config: Config | None = None) -> Tensor:
    """``x @ W_hat^T`` of a kernel state: ``x`` ``(M, d_in)`` -> ``(M, d_out)`` in ``x``'s dtype (fp16 or
    bf16 activations, fp32 accumulation), launched by ``launch(st, xa, config)`` with ``config`` or the
    one :func:`choose` gives for ``tuning(st, xa)`` (key and candidates)."""
    xa = as_activations(x)
    if config is None:
        config = choose(*tuning(st, xa), lambda s, c: launch(s, xa, c), st, xa.device)
    return launch(st, xa, config).to(x.dtype)


def compiled_ptx(x: Tensor) -> bool:
    """Whether the kernel runs compiled on an NVIDIA GPU (inline PTX), not in Triton's interpreter or on ROCm."""
    return x.device.type == "cuda" and torch.version.hip is None and os.environ.get("TRITON_INTERPRET") != "1"


def tma_words(c: Config, x: Tensor, word_bytes: int, wb: int) -> bool:
    """Whether a launch at ``c`` loads its code words through the tensor memory accelerator (``c.tma``, on
    an NVIDIA sm_90 or newer GPU or in Triton's interpreter) from planes of ``word_bytes``-byte words, ``wb``
    of them a box row: a box's rows must be at least 16 bytes, so the uniform kernel's 2-bit blocks of 32
    inputs and the high plane of 3-bit blocks of 64 or fewer keep the register loads, as do configurations
    without ``tma``."""
    if not c.tma or wb * word_bytes < 16:
        return False
    return not x.is_cuda or dependent_launch(x)


def dependent_launch(x: Tensor) -> bool:
    """Whether a kernel on ``x``'s device may launch as a programmatic dependent of the one before it
    (compiled, NVIDIA sm_90 or newer: ``griddepcontrol``)."""
    return compiled_ptx(x) and torch.cuda.get_device_capability(x.device)[0] >= 9


def as_activations(x: Tensor) -> Tensor:
    """``x`` ``(M, K)`` as contiguous fp16 (bf16 kept): the kernels' activation dtype."""
    if x.dtype not in (torch.float16, torch.bfloat16):
        x = x.to(torch.float16)
    return x.contiguous()


@triton.jit
def halves(v, DT: tl.constexpr):
    """The two 16-bit halves of 32-bit words ``v``, bits 0-15 and 16-31, as ``DT`` (fp16 or bf16) tiles."""
    return ((v & 0xFFFF).to(tl.int16).to(DT, bitcast=True), ((v >> 16) & 0xFFFF).to(tl.int16).to(DT, bitcast=True))


@triton.jit
def zeros_acc(BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GPI: tl.constexpr, WB: tl.constexpr):
    """The fp32 accumulator: ``(BLOCK_N, GPI, WB)`` for a GEMV (reduced by :func:`finish`), else
    ``(BLOCK_N, BLOCK_M)`` (transposed, :func:`mac`)."""
    if BLOCK_M == 1:
        acc = tl.zeros((BLOCK_N, GPI, WB), dtype=tl.float32)
    else:
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    return acc
