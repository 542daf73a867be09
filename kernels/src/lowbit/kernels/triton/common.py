"""Pieces shared by the Triton kernels: bit-plane code layout, activation loads, the multiply-accumulate,
sparse outliers in the same pass, the output store, and the per-process configuration tuner.

**Codes: bit planes packed along the inputs.** A b-bit code is split into power-of-two planes
(:data:`PLANES`: 1 -> 1, 2 -> 2, 3 -> 2 + 1, 4 -> 4); plane p of width w holds ``32 / w`` codes per
int32 word, packed along the input dimension: word ``(k // (32/w), n)`` of a ``(K w / 32, N)`` int32
tensor, code of input k at bit ``w (k mod 32/w)``. Consecutive output rows n are consecutive words,
so a tile's loads are coalesced (the K-major ``qweight`` layout of the GPTQ CUDA/Triton kernels,
arXiv 2210.17323). 3 bits are exactly 3 bits per weight (a 2-bit and a 1-bit plane, two loads of whole
words) rather than 10 codes per word (3.2 bits) or a 96-bit stream of 32 codes in 3 words (codes
straddling words): no straddling and the unpacking of every width is the same shift-and-mask.

**Tiles.** A program computes ``y[m-block, n-block]`` over every ``SPLIT_K``-th K-tile of ``BLOCK_K``
inputs; its partial sums are stored directly (``SPLIT_K = 1``, one launch) or added atomically into a
zeroed fp32 output (split K, or several launches into one ``y``). A batch of one row is a GEMV
(broadcast multiply and sum over K in fp32), larger batches use ``tl.dot`` on the dequantized fp16
tile (``BLOCK_M`` >= 16), fp32 accumulation in both.

**Sparse outliers in the same pass** (SpQR, arXiv 2306.03078): stored as CSR over output rows (row
pointers int32, columns int16 read back as unsigned, and ``delta = value - W_grid[r, c]`` in fp16), the
program that owns output rows ``n`` and the first K split adds ``sum_k delta_k x[c_k]`` for its rows
after its main loop: no second launch, a few gathers per row.

**Tuning.** :func:`choose` times each candidate configuration of a kernel on its first call for a key
(shape, batch bucket, format parameters, GPU) with ``triton.testing.do_bench`` (which flushes L2
before each repetition, so the data come from memory as in decoding), timing the whole launch
(zeroing and casting of split-K outputs included, which ``triton.autotune`` would not see), and keeps
the fastest in a process-wide dict: tuned once per process and GPU, not persisted. Under Triton's
interpreter (CPU tensors), or with ``LOWBIT_TRITON_TUNE=0``, the first candidate is used.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor

from lowbit.core.formats import QuantizedWeight

log = logging.getLogger(__name__)

PLANES: dict[int, tuple[int, ...]] = {1: (1,), 2: (2,), 3: (2, 1), 4: (4,)}


# ---------------------------------------------------------------------------------------------- layout


def pad_cols(t: Tensor, k_pad: int, value: float = 0) -> Tensor:
    """``t`` ``(R, K)`` padded with ``value`` to ``(R, k_pad)`` columns."""
    return torch.nn.functional.pad(t, (0, k_pad - t.shape[1]), value=value)


def pack_planes(codes: Tensor, bits: int) -> list[Tensor]:
    """``codes`` ``(N, K)`` integers below ``2^bits`` (K a multiple of 32) -> one ``(K w / 32, N)`` int32
    tensor per plane of :data:`PLANES` ``[bits]``: plane p holds bits ``shift_p .. shift_p + w_p - 1``
    of each code, ``32 / w`` codes per word along K, low bits first."""
    n, k = codes.shape
    if k % 32:
        raise ValueError(f"pack_planes needs K a multiple of 32, got {k}")
    c = codes.to(torch.int64).T  # (K, N)
    out, shift = [], 0
    for w in PLANES[bits]:
        per = 32 // w
        part = ((c >> shift) & ((1 << w) - 1)).reshape(k // per, per, n)
        words = (part << (w * torch.arange(per, device=c.device))[None, :, None]).sum(1)  # < 2^32
        out.append(torch.where(words >= 2**31, words - 2**32, words).to(torch.int32).contiguous())
        shift += w
    return out


@dataclass
class Outliers:
    """Sparse outliers of one weight in the kernels' CSR layout (see the module docstring)."""

    indptr: Tensor  # (N + 1,) int32
    cols: Tensor  # (nnz,) int16, unsigned columns < 65536
    delta: Tensor  # (nnz,) fp16: outlier value minus the quantized grid value it replaces



def outliers_csr(rows: Tensor, cols: Tensor, delta: Tensor, n_rows: int) -> Outliers:
    """CSR of entries ``(rows[i], cols[i], delta[i])`` over ``n_rows`` output rows, columns sorted per row."""
    rows, cols = rows.long(), cols.long()
    order = torch.argsort(rows * (int(cols.max()) + 1 if cols.numel() else 1) + cols)
    indptr = torch.zeros(n_rows + 1, dtype=torch.int64, device=rows.device)
    indptr[1:] = torch.bincount(rows, minlength=n_rows).cumsum(0)
    c = cols[order]
    return Outliers(indptr.to(torch.int32), torch.where(c >= 2**15, c - 2**16, c).to(torch.int16),
                    delta[order].to(torch.float16))


def grid_outliers(qw: QuantizedWeight, device: torch.device) -> Outliers | None:
    """The sparse outliers of ``qw`` as deltas over the grid values they replace (from the dense
    reference weight without outliers: a one-time cost at prepare), on ``device``; None without any."""
    o = qw.outliers
    if o is None or not o.nnz:
        return None
    rows, cols = o.rows.to(device).long(), o.cols.to(device).long()
    grid = dataclasses.replace(qw, outliers=None).dequantize().to(device)[rows, cols]
    return outliers_csr(rows, cols, o.values.to(device).float() - grid, qw.shape[0])


# ------------------------------------------------------------------------------------------ jit helpers


@triton.jit
def unpack_plane(Q, word0, offs_n, n_mask, N, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr, W: tl.constexpr):
    """``(BLOCK_K, BLOCK_N)`` int32 codes of one plane of width ``W`` from words ``word0 ..`` (K-packed)."""
    PER: tl.constexpr = 32 // W
    rows = word0 + tl.arange(0, BLOCK_K // PER)
    words = tl.load(Q + rows[:, None] * N + offs_n[None, :], mask=n_mask[None, :], other=0)
    shifts = tl.arange(0, PER) * W
    q = (words[:, None, :] >> shifts[None, :, None]) & ((1 << W) - 1)
    return tl.reshape(q, (BLOCK_K, BLOCK_N))


@triton.jit
def load_codes(Q0, Q1, k0, offs_n, n_mask, N, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr,
               W0: tl.constexpr, W1: tl.constexpr):
    """Codes of inputs ``k0 .. k0 + BLOCK_K`` from up to two bit planes (``W1 = 0``: one plane)."""
    q = unpack_plane(Q0, k0 // (32 // W0), offs_n, n_mask, N, BLOCK_K, BLOCK_N, W0)
    if W1 > 0:
        q = q | (unpack_plane(Q1, k0 // (32 // W1), offs_n, n_mask, N, BLOCK_K, BLOCK_N, W1) << W0)
    return q


@triton.jit
def load_x(X, stride_xm, offs_m, m_mask, offs_k, K, PERM, HAS_PERM: tl.constexpr, BLOCK_M: tl.constexpr):
    """Activations of inputs ``offs_k`` (columns ``PERM[offs_k]`` when permuted; zero at and beyond ``K``):
    ``(BLOCK_K, 1)`` for a GEMV (``BLOCK_M = 1``), else ``(BLOCK_M, BLOCK_K)``."""
    k_ok = offs_k < K
    if HAS_PERM:
        cols = tl.load(PERM + offs_k)
    else:
        cols = offs_k
    # one return after a static if (Triton rejects returns of different shapes in its branches)
    if BLOCK_M == 1:
        x = tl.load(X + offs_m[None, :] * stride_xm + cols[:, None], mask=k_ok[:, None] & m_mask[None, :],
                    other=0.0)
    else:
        x = tl.load(X + offs_m[:, None] * stride_xm + cols[None, :], mask=m_mask[:, None] & k_ok[None, :], other=0.0)
    return x


@triton.jit
def accumulate(acc, x, w, BLOCK_M: tl.constexpr):
    """``acc (BLOCK_M, BLOCK_N) += x @ w`` for the tile ``w`` ``(BLOCK_K, BLOCK_N)`` fp32: a broadcast
    multiply and sum for one row, ``tl.dot`` in the activations' dtype otherwise (fp32 accumulation)."""
    if BLOCK_M == 1:
        acc += tl.sum(x.to(tl.float32) * w, axis=0)[None, :]
    else:
        acc = tl.dot(x, w.to(x.dtype), acc)
    return acc


@triton.jit
def add_outliers(acc, X, stride_xm, offs_m, m_mask, offs_n, n_mask, PTR, OCOL, OVAL, first):
    """``acc[m, n] += sum_{i in row n} delta_i x[m, col_i]`` (CSR; only where ``first``, the first K split)."""
    start = tl.load(PTR + offs_n, mask=n_mask, other=0)
    count = tl.load(PTR + offs_n + 1, mask=n_mask, other=0) - start
    count = tl.where(first, count, 0)
    for i in range(0, tl.max(count, axis=0)):
        ok = i < count
        col = tl.load(OCOL + start + i, mask=ok, other=0).to(tl.int32) & 0xFFFF
        delta = tl.load(OVAL + start + i, mask=ok, other=0.0).to(tl.float32)
        xv = tl.load(X + offs_m[:, None] * stride_xm + col[None, :], mask=m_mask[:, None] & ok[None, :], other=0.0)
        acc += xv.to(tl.float32) * delta[None, :]
    return acc


@triton.jit
def store_y(Y, acc, offs_m, m_mask, offs_n, n_mask, N, ATOMIC: tl.constexpr):
    """Write (or, ``ATOMIC``, add into a zeroed fp32 ``Y``) the ``(BLOCK_M, BLOCK_N)`` tile."""
    ptr = Y + offs_m[:, None] * N + offs_n[None, :]
    mask = m_mask[:, None] & n_mask[None, :]
    if ATOMIC:
        tl.atomic_add(ptr, acc, mask=mask)
    else:
        tl.store(ptr, acc.to(Y.dtype.element_ty), mask=mask)


# ------------------------------------------------------------------------------------------------ launch


@dataclass(frozen=True)
class Config:
    """One launch configuration: output rows and inputs per tile, K splits, warps, pipeline stages."""

    block_n: int
    block_k: int
    split_k: int = 1
    num_warps: int = 4
    num_stages: int = 3


# (BLOCK_N, BLOCK_K, SPLIT_K, warps). GEMV shapes want many programs and long K tiles, dot shapes
# fewer; the lists are short because every configuration is one more compilation per kernel variant.
GEMV_CONFIGS = [Config(64, 128, 1, 4), Config(128, 128, 1, 4), Config(64, 256, 1, 4), Config(64, 128, 4, 4),
                Config(128, 128, 4, 4), Config(64, 256, 4, 4), Config(128, 64, 8, 4), Config(256, 128, 2, 8)]
DOT_CONFIGS = [Config(64, 64, 1, 4), Config(64, 128, 2, 4), Config(128, 64, 4, 4), Config(64, 64, 4, 4),
               Config(32, 128, 8, 4)]


def block_m(m: int) -> int:
    """Rows of x per program: 1 (GEMV) for one row, else the power of two >= m, at least 16 (``tl.dot``)."""
    return 1 if m == 1 else max(16, triton.next_power_of_2(m))


def candidates(m: int, k_pad: int, block_k_ok: Callable[[int], bool]) -> list[Config]:
    """The configurations for ``m`` rows whose ``BLOCK_K`` divides ``k_pad`` and passes ``block_k_ok``
    (a K split never exceeds the number of K tiles); never empty."""
    base = GEMV_CONFIGS if m == 1 else DOT_CONFIGS
    ok = [c for c in base if k_pad % c.block_k == 0 and block_k_ok(c.block_k) and c.split_k <= k_pad // c.block_k]
    if not ok:  # odd shapes: the smallest tile that fits
        bk = next(b for b in (32, 64, 128, 256) if k_pad % b == 0 and block_k_ok(b))
        ok = [Config(64, bk, s) for s in (1, 2, 4) if s <= k_pad // bk]
    return ok


_BEST: dict[tuple, Config] = {}


def choose(key: tuple, configs: Sequence[Config], launch: Callable[[Config], object], device: torch.device) -> Config:
    """The fastest of ``configs`` for ``key`` on this GPU (timed once per process), the first on the CPU."""
    if device.type != "cuda" or len(configs) == 1 or os.environ.get("LOWBIT_TRITON_TUNE") == "0":
        return configs[0]
    full = (*key, torch.cuda.get_device_name(device))
    best = _BEST.get(full)
    if best is None:
        from triton.testing import do_bench

        times = []
        for c in configs:
            try:
                times.append(do_bench(lambda c=c: launch(c), warmup=5, rep=20))
            except Exception as e:  # a configuration that does not compile or fit: skip it
                log.debug("config %s failed for %s: %s", c, key, e)
                times.append(float("inf"))
        best = configs[min(range(len(configs)), key=times.__getitem__)]
        _BEST[full] = best
        log.info("tuned %s: %s (%.2f us)", key, best, 1e3 * min(times))
    return best


def as_activations(x: Tensor) -> Tensor:
    """``x`` ``(M, K)`` as contiguous fp16 (bf16 kept): the kernels' activation dtype."""
    if x.dtype not in (torch.float16, torch.bfloat16):
        x = x.to(torch.float16)
    return x.contiguous()


def output(m: int, n: int, atomic: bool, like: Tensor) -> Tensor:
    """The kernel's output buffer: zeroed fp32 for atomic accumulation, else ``like``'s dtype."""
    if atomic:
        return torch.zeros(m, n, dtype=torch.float32, device=like.device)
    return torch.empty(m, n, dtype=like.dtype, device=like.device)
