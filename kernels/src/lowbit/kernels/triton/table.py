"""Binary codes (BCQ; GPTQT, arXiv 2407.02891): ``W_hat[n, k] = offset[n, g] + sum_i alpha[n, g, i] (2 b_i - 1)``
takes ``2^b`` values per (row, group), affine in the code's bits. Prepare stores per (group, row) the value
of code 0 and the step each bit adds (:func:`binary_steps`, ``(d_in / g, d_out, b + 1)`` fp16, each rounded
once, where a table of the ``2^b`` values would add the rounding of up to ``b + 1`` entries); the kernel
loads them once per word row and computes ``c0 + sum_p bit_p(q) c_{p+1}`` per weight (:func:`affine_bits`).
No gather: with the lanes along the rows, a table gather would read a different row's table in every lane.

**Codes: word rows along K, output rows contiguous.** The words of :func:`lowbit.kernels.triton.common.pack_codes`
(blocks of ``KB`` inputs, ``PER`` codes a word) are stored transposed, ``(K / PER, d_out)``, so the lanes
of a warp run along the output rows. (Per-column lookup tables, which this kernel also ran with a 2-byte
gather per code until session 18, are in :mod:`lowbit.kernels.triton.column_tables`.)
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
    run_tuned,
    store_y,
)
from .uniform import group_perm


@dataclass
class BinaryState:
    """The kernel layout of a ``binary`` weight."""

    words: Tensor  # (d_in / PER, d_out) int32: word rows along K, output rows contiguous
    high: Tensor | None  # (d_in / 16, d_out) int16: the high bits of 3-bit codes
    steps: Tensor  # flat fp16 (d_in / g, d_out, b + 1): :func:`binary_steps` per (group, row)
    perm: Tensor | None  # (d_in,) int32 input column of each kernel column (act-order), or None
    bits: int
    outliers: Outliers | None
    group_size: int
    block: int  # KB
    shape: tuple[int, int]


def binary_steps(alphas: Tensor, offsets: Tensor) -> Tensor:
    """``(..., b)`` coefficients and ``(...)`` offsets -> ``(..., b + 1)``: the value of code 0, ``offset -
    sum_i alpha_i``, then the step ``2 alpha`` that each bit of the code adds, least significant bit first
    (bit ``p`` goes with ``alpha_{b-1-p}``, :func:`lowbit.core.formats.binary_code_values`): code ``j``'s
    value is ``steps[0] + sum_p bit_p(j) steps[1 + p]``."""
    return torch.cat([(offsets - alphas.sum(-1))[..., None], 2 * alphas.flip(-1)], -1)


def prepare_binary(qw: QuantizedWeight, device: torch.device | str | None = None) -> BinaryState:
    """Re-layout a ``binary`` weight: per (group, row) the ``b + 1`` fp16 values of :func:`binary_steps`,
    stored ``(d_in / g, d_out, b + 1)``; the code planes transposed."""
    dev = torch.device(device) if device is not None else qw.codes.device
    assert qw.alphas is not None and qw.offsets is not None
    d_out, d_in = qw.shape
    gs = qw.group_size or d_in
    b = int(qw.bits)
    steps = binary_steps(qw.alphas.to(dev).float(), qw.offsets.to(dev).float())  # (d_out, G, b + 1)
    steps = steps.transpose(0, 1).to(torch.float16).contiguous()
    codes = qw.codes.to(dev)
    perm = group_perm(qw)
    if perm is not None:
        perm = perm.to(dev)
        codes = codes[:, perm]
    kb = block_size(d_in, gs)
    planes = [p.T.contiguous() for p in pack_codes(codes.long(), b, kb)]
    return BinaryState(planes[0], planes[1] if b == 3 else None, steps.reshape(-1),
                       None if perm is None else perm.to(torch.int32), b, grid_outliers(qw, dev), gs, kb, (d_out, d_in))


@triton.jit
def word_rows(Q0, Q1, offs_n, N, r0, n_wrows, W1: tl.constexpr, R: tl.constexpr):
    """The ``(R, BLOCK_N)`` code words of word rows ``r0 .. r0 + R`` (those before ``n_wrows``), and of the
    1-bit high plane (3 bits), for output rows ``offs_n`` (zero past ``N``)."""
    r = r0 + tl.arange(0, R)
    ok = (r < n_wrows)[:, None] & (offs_n < N)[None, :]
    w0 = tl.load(Q0 + r[:, None] * N + offs_n[None, :], mask=ok, other=0).to(tl.int32)
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
def binary_loop(X, stride_xm, offs_m, m_mask, offs_n, N, Q0, Q1, T, PERM, K, KB: tl.constexpr, GS: tl.constexpr,
                PER: tl.constexpr, W0: tl.constexpr, W1: tl.constexpr, HAS_PERM: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, R: tl.constexpr, PREFETCH: tl.constexpr):
    """``(BLOCK_M, BLOCK_N)`` ``sum_k X[m, perm(k)] W_hat[n, k]``, ``R`` word rows (``R PER`` inputs) per
    iteration, the steps of (group of ``GS``, row) applied by :func:`affine_bits`. Word row ``r`` holds the
    codes of inputs ``k = (r // WB) KB + i WB + r % WB`` (shift ``i``) for every output row. A GEMV sums
    ``w x`` into an fp32 ``(R, BLOCK_N)`` tile, reduced over its rows after the loop; batches ``tl.dot`` the
    ``(BLOCK_M, R)`` activations with the ``(R, BLOCK_N)`` weights in the activations' dtype. ``PREFETCH``:
    the next iteration's code words are loaded before this one's arithmetic (a register double buffer, see
    :func:`lowbit.kernels.triton.common.loads_ahead`)."""
    WB: tl.constexpr = KB // PER
    n_wrows = K // PER
    if BLOCK_M == 1:
        acc = tl.zeros((R, BLOCK_N), dtype=tl.float32)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if PREFETCH:
        w0n, w1n = word_rows(Q0, Q1, offs_n, N, 0, n_wrows, W1, R)
    for r0 in range(0, n_wrows, R):
        r = r0 + tl.arange(0, R)
        ok = r < n_wrows
        if PREFETCH:
            w0, w1 = w0n, w1n
            w0n, w1n = word_rows(Q0, Q1, offs_n, N, r0 + R, n_wrows, W1, R)
        else:
            w0, w1 = word_rows(Q0, Q1, offs_n, N, r0, n_wrows, W1, R)
        blk = r // WB
        k0 = blk * KB + r % WB  # (R,) inputs of shift 0
        t_row = ((blk * KB // GS)[:, None] * N + tl.minimum(offs_n, N - 1)[None, :]) * (W0 + W1 + 1)
        c0, c1, c2, c3, c4 = load_steps(T, t_row, ok[:, None], W0 + W1)
        for i in tl.static_range(PER):
            w = affine_bits(code_at(w0, w1, i, W0, W1), c0, c1, c2, c3, c4, W0 + W1)
            x = load_xt(X, stride_xm, offs_m, m_mask, k0 + i * WB, ok, PERM, HAS_PERM)
            if BLOCK_M == 1:
                acc += w * x.to(tl.float32)
            else:
                acc = tl.dot(tl.trans(x), w.to(x.dtype), acc)
    if BLOCK_M == 1:
        acc = tl.sum(acc, axis=0)[None, :]
    return acc


@triton.jit
def binary_kernel(X, Y, Q0, Q1, T, PERM, PTR, OROW, OCOL, OVAL, M, N, K, stride_xm, B: tl.constexpr,
                  R: tl.constexpr, KB: tl.constexpr, GS: tl.constexpr, HAS_PERM: tl.constexpr, HAS_OUT: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, OUT_CHUNK: tl.constexpr, PREFETCH: tl.constexpr):
    """``Y[m, n] = sum_k X[m, perm(k)] W_hat[n, k]`` for ``B``-bit binary codes (3 bits: a 2-bit and a
    1-bit plane, 16 per word), one program per ``BLOCK_N`` rows, ``R`` word rows per iteration."""
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = offs_m < M
    if HAS_OUT:  # the outlier walk's first loads, before the main loop
        o_first, o_end, o_r, o_d, o_x = outliers_begin(X, stride_xm, offs_m, m_mask, offs_n, N, PTR, OROW, OCOL, OVAL,
                                                       0, BLOCK_N, OUT_CHUNK, 1)
    if B == 3:
        acc = binary_loop(X, stride_xm, offs_m, m_mask, offs_n, N, Q0, Q1, T, PERM, K, KB, GS, 16, 2, 1, HAS_PERM,
                          BLOCK_M, BLOCK_N, R, PREFETCH)
    else:
        acc = binary_loop(X, stride_xm, offs_m, m_mask, offs_n, N, Q0, Q1, T, PERM, K, KB, GS, 32 // B, B, 0, HAS_PERM,
                          BLOCK_M, BLOCK_N, R, PREFETCH)
    if HAS_OUT:
        acc = outliers_end(acc, o_first, o_end, o_r, o_d, o_x, X, stride_xm, offs_m, m_mask, offs_n, OROW, OCOL, OVAL,
                           BLOCK_M, OUT_CHUNK, 1)
    store_y(Y, acc, offs_m, m_mask, offs_n, N, 1)


def _launch(st: BinaryState, x: Tensor, c: Config) -> Tensor:
    m, n = x.shape[0], st.shape[0]
    bm = block_m(m)
    d_in = st.shape[1]
    per = PER[st.bits]
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)
    binary_kernel[(triton.cdiv(n, c.block_n), triton.cdiv(m, bm))](
        x, y, st.words, st.high if st.high is not None else st.words, st.steps,
        st.perm if st.perm is not None else st.steps, *outlier_args(st.outliers, y), m, n, d_in, x.stride(0),
        B=st.bits, R=blocks_per_iter(c, per, st.block, d_in // st.block, bm) * st.block // per, KB=st.block,
        GS=st.group_size, HAS_PERM=st.perm is not None, HAS_OUT=st.outliers is not None, BLOCK_M=bm,
        BLOCK_N=c.block_n, OUT_CHUNK=out_chunk(c.block_n, st.outliers), PREFETCH=loads_ahead(c, bm),
        num_warps=c.num_warps, num_stages=gather_stages(c, bm))
    return y


def tuning(st: BinaryState, xa: Tensor) -> tuple[tuple, list[Config]]:
    """The tuning key of ``st`` for activations ``xa`` (in the form of the per-GPU files' entries, measured
    when this kernel also ran per-column tables: ``"table"``, the shape, the group, the ``(bits, d_in)``
    segment) and the configurations tried (no split K)."""
    return (("table", *st.shape, st.group_size, ((st.bits, st.shape[1]),), st.outliers is not None,
             block_m(xa.shape[0]), xa.dtype), candidates(xa.shape[0], split=False))


def run(st: BinaryState, x: Tensor, config: Config | None = None) -> Tensor:
    """``x @ W_hat^T`` (:func:`lowbit.kernels.triton.common.run_tuned`); ``config`` forces a launch
    configuration (tests, the benchmark's sweep)."""
    return run_tuned(st, x, tuning, _launch, config)
