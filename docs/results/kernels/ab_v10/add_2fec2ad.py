"""Additive codebooks (AQLM, arXiv 2401.06118): ``W_hat[n, 8j:8j+8] = s[n] sum_m C_m[code[n, j, m]]``, g = 8.

Layout built once by :func:`prepare`: the M codes of each (row n, group j) in one int16 word
``sum_m code_m << (m B)`` (M B <= 16: "2x8" and "1x16", 2 bits per weight), stored ``(d_out, d_in / 8)``
row-major (K-contiguous per output row: a program owning ``BLOCK_N`` rows streams ``BLOCK_N``
contiguous runs over K, all of it or, with split K, a range); codebooks ``(M, 2^B, 8)`` fp16; scales ``(d_out,)`` fp16,
applied once per row after the reduction (``y_n = s_n sum_j <x_j, sum_m C_m[c_njm]>``).

The kernel dequantizes by gathering each code's 8-vector (one 16-byte load) into a ``(BLOCK_N,
BLOCK_J, 8)`` tile in natural input order, summing the M codebooks' vectors in fp16 (codewords of
row-scaled weights are small). A GEMV multiplies the tile by the ``(BLOCK_J, 8)`` activations in fp32
and sums each group into an fp32 ``(BLOCK_N, BLOCK_J)`` accumulator, reduced once after the loop
(products and group sums in fp16 took 4.0-5.7 instructions a weight against 5.7-6.2,
``benchmarks/kernel_sass.py``, but overflowed to inf for activations of a few hundred against codewords
of 30, where the result is far inside fp16); batches reshape the tile
(no permute) to ``(BLOCK_N, 8 BLOCK_J)`` fp16 for ``tl.dot`` (fp32 products and accumulation). For 2x8
the two codebooks are 8 KiB and stay in L1 (the AQLM CUDA kernel copies them to shared memory; Triton
has no explicit shared-memory gather, L1 serves the same role); for 1x16 the 1 MiB codebook is read
through L2 as in the AQLM 1x16 kernel.

Not done: AQLM's other batch-1 trick, a per-call table of the dot products ``<x_j, C_m[c]>`` for every
group and entry (then ``y_n = s_n sum_j sum_m LUT_m[j, c_njm]``). For 2x8 that table is ``d_in / 8 x 256``
fp32 per codebook (1 MiB for d_in = 4096) and each weight's code would gather a 4-byte entry from it
through L2: more L2 traffic than gathering the 16-byte codebook vectors, which L1 holds; for 1x16 it
would be 65536 entries per group. Sparse outliers are added in the same pass after the scaling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor

from lowbit.core.formats import QuantizedWeight

from lowbit.kernels.triton.common import (
    Config,
    Outliers,
    block_m,
    candidates,
    finish,
    gather_stages,
    grid_outliers,
    load_x,
    loads_ahead,
    mac,
    out_chunk,
    outlier_args,
    outliers_begin,
    outliers_end,
    output,
    run_tuned,
    split_blocks,
    store_y,
    zeros_acc,
)

GROUP = 8


@dataclass
class AdditiveState:
    """The kernel layout of one additive weight (see the module docstring)."""

    codes: Tensor  # (d_out, d_in / 8) int16: sum_m code_m << (m B)
    codebooks: Tensor  # (M, 2^B, 8) fp16
    scales: Tensor  # (d_out,) fp16
    outliers: Outliers | None
    n_codebooks: int
    bits: int
    shape: tuple[int, int]


def prepare(qw: QuantizedWeight, device: torch.device | str | None = None) -> AdditiveState:
    """Re-layout an additive ``qw`` (codes ``(d_out, d_in / 8, M)``) for the kernel (once)."""
    dev = torch.device(device) if device is not None else qw.codes.device
    assert qw.codebooks is not None and qw.scales is not None
    d_out, d_in = qw.shape
    n_cb, b = qw.codes.shape[-1], int(qw.bits)
    codes = qw.codes.to(dev).long()
    word = sum(codes[..., m] << (m * b) for m in range(n_cb))  # (d_out, J)
    word = torch.where(word >= 2**15, word - 2**16, word).to(torch.int16).contiguous()
    return AdditiveState(word, qw.codebooks.to(dev, torch.float16).contiguous(),
                         qw.scales.to(dev, torch.float16).reshape(-1).contiguous(), grid_outliers(qw, dev), n_cb, b,
                         (d_out, d_in))


@triton.jit
def load_codes(C, rows, n_groups, j0, j_end, BLOCK_J: tl.constexpr):
    """The ``(BLOCK_N, BLOCK_J)`` code words of groups ``j0 ..`` (those before ``j_end``) as unsigned int32."""
    jj = j0 + tl.arange(0, BLOCK_J)
    c = tl.load(C + rows[:, None] * n_groups + jj[None, :], mask=(jj < j_end)[None, :], other=0)
    return c.to(tl.int32) & 0xFFFF


@triton.jit
def additive_kernel(X, Y, C, CB, S, PTR, OROW, OCOL, OVAL, M, N, K, stride_xm, n_groups,
                    NCB: tl.constexpr, B: tl.constexpr, HAS_OUT: tl.constexpr, BLOCK_M: tl.constexpr,
                    BLOCK_N: tl.constexpr, BLOCK_J: tl.constexpr, SPLIT: tl.constexpr, SPLIT_GROUPS,
                    OUT_CHUNK: tl.constexpr, PREFETCH: tl.constexpr):
    """``Y[m, n] = S[n] sum_j <X[m, 8j:8j+8], sum_i CB[i, code_i(n, j)]>`` for ``BLOCK_N`` rows over groups
    ``pid_k SPLIT_GROUPS ..`` (all ``n_groups = K / 8`` without split), ``BLOCK_J`` groups per iteration.
    ``PREFETCH`` (:func:`lowbit.kernels.triton.common.loads_ahead`, GEMV only): the next iteration's codes
    are loaded before this one's codebook gathers, so the gathers do not wait for a load from memory."""
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    pid_k = tl.program_id(2)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rows = tl.minimum(offs_n, N - 1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = offs_m < M
    j_start = pid_k * SPLIT_GROUPS
    j_end = tl.minimum(j_start + SPLIT_GROUPS, n_groups)
    if HAS_OUT:  # the outlier walk's first loads, before the main loop
        o_first, o_end, o_r, o_d, o_x = outliers_begin(X, stride_xm, offs_m, m_mask, offs_n, N, PTR, OROW, OCOL, OVAL,
                                                       pid_k, BLOCK_N, OUT_CHUNK, SPLIT)
    e = tl.arange(0, 8)
    acc = zeros_acc(BLOCK_M, BLOCK_N, BLOCK_J, 1)
    if PREFETCH:
        cn = load_codes(C, rows, n_groups, j_start, j_end, BLOCK_J)
    for j0 in range(j_start, j_end, BLOCK_J):
        jj = j0 + tl.arange(0, BLOCK_J)
        ok = jj < j_end
        if PREFETCH:
            c = cn
            cn = load_codes(C, rows, n_groups, j0 + BLOCK_J, j_end, BLOCK_J)
        else:
            c = load_codes(C, rows, n_groups, j0, j_end, BLOCK_J)
        w = tl.load(CB + (c & ((1 << B) - 1))[:, :, None] * 8 + e[None, None, :])
        for i in tl.static_range(1, NCB):
            code = (c >> (i * B)) & ((1 << B) - 1)
            w += tl.load(CB + (i << B) * 8 + code[:, :, None] * 8 + e[None, None, :])
        k = jj[:, None] * 8 + e[None, :]
        x = load_x(X, stride_xm, offs_m, m_mask, k, ok[:, None], X, False)
        if BLOCK_M == 1:
            acc += tl.sum(w.to(tl.float32) * x.to(tl.float32), axis=2, keep_dims=True)
        else:
            acc = mac(acc, x, w, BLOCK_M, BLOCK_N, BLOCK_J * 8)
    acc = finish(acc, BLOCK_M) * tl.load(S + rows).to(tl.float32)[None, :]
    if HAS_OUT:
        acc = outliers_end(acc, o_first, o_end, o_r, o_d, o_x, X, stride_xm, offs_m, m_mask, offs_n, OROW, OCOL, OVAL,
                           BLOCK_M, OUT_CHUNK, SPLIT)
    store_y(Y, acc, offs_m, m_mask, offs_n, N, SPLIT)


def _launch(st: AdditiveState, x: Tensor, c: Config) -> Tensor:
    m, (n, k) = x.shape[0], st.shape
    bm = block_m(m)
    y = output(m, n, c.split_k, x)
    n_groups = k // GROUP
    # one int16 code per 8 weights: half a config word per group keeps the fp32 tiles at the uniform
    # kernel's size (BLOCK_N x words values)
    block_j = max(2, min(c.words // 2, triton.next_power_of_2(triton.cdiv(n_groups, c.split_k))))  # tl.dot: K >= 16
    additive_kernel[(triton.cdiv(n, c.block_n), triton.cdiv(m, bm), c.split_k)](
        x, y, st.codes, st.codebooks, st.scales, *outlier_args(st.outliers, y), m, n, k, x.stride(0), n_groups,
        NCB=st.n_codebooks, B=st.bits, HAS_OUT=st.outliers is not None, BLOCK_M=bm, BLOCK_N=c.block_n,
        BLOCK_J=block_j, SPLIT=c.split_k, SPLIT_GROUPS=split_blocks(n_groups, block_j, c.split_k),
        OUT_CHUNK=out_chunk(c.block_n, st.outliers), PREFETCH=loads_ahead(c, bm), num_warps=c.num_warps,
        num_stages=gather_stages(c, bm))
    return y.to(x.dtype)


def tuning(st: AdditiveState, xa: Tensor) -> tuple[tuple, list[Config]]:
    """The tuning key of ``st`` for activations ``xa`` and the configurations tried."""
    return (("additive", *st.shape, st.n_codebooks, st.bits, st.outliers is not None, block_m(xa.shape[0]),
             xa.dtype), candidates(xa.shape[0]))


def run(st: AdditiveState, x: Tensor, config: Config | None = None) -> Tensor:
    """``x @ W_hat^T`` (:func:`lowbit.kernels.triton.common.run_tuned`); ``config`` forces a launch
    configuration (tests, the benchmark's sweep)."""
    return run_tuned(st, x, tuning, _launch, config)
