"""Additive codebooks (AQLM, arXiv 2401.06118): ``W_hat[n, 8j:8j+8] = s[n] sum_m C_m[code[n, j, m]]``, g = 8.

Layout built once by :func:`prepare`: the M codes of each (group j, row n) in one int16 word
``sum_m code_m << (m B)`` (M B <= 16: "2x8" and "1x16", 2 bits per weight), stored ``(d_in / 8, d_out)``
so a tile's consecutive rows are one coalesced load; codebooks ``(M, 2^B, 8)`` fp16; scales ``(d_out,)``
fp16, applied once per row after the reduction (``y_n = s_n sum_j <x_j, sum_m C_m[c_njm]>``).

The kernel dequantizes by gathering each code's 8-vector (16 contiguous bytes) and reduces against
``x`` (GEMV) or feeds ``tl.dot`` (batches). For 2x8 the two codebooks are 8 KiB and stay in L1 (the
AQLM CUDA kernel copies them to shared memory; Triton has no explicit shared-memory gather, L1 serves
the same role); for 1x16 the 1 MiB codebook is read through L2 as in the AQLM 1x16 kernel.

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

from .common import (
    Config,
    Outliers,
    add_outliers,
    as_activations,
    block_m,
    candidates,
    choose,
    grid_outliers,
    load_x,
    output,
    pad_cols,
    store_y,
)

GROUP = 8


@dataclass
class AdditiveState:
    """The kernel layout of one additive weight (see the module docstring)."""

    codes: Tensor  # (j_pad, d_out) int16: sum_m code_m << (m B)
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
    j = d_in // GROUP
    word = pad_cols(word, triton.cdiv(j, 8) * 8).T
    word = torch.where(word >= 2**15, word - 2**16, word).to(torch.int16).contiguous()
    return AdditiveState(word, qw.codebooks.to(dev, torch.float16).contiguous(),
                         qw.scales.to(dev, torch.float16).reshape(-1).contiguous(), grid_outliers(qw, dev), n_cb, b,
                         (d_out, d_in))


@triton.jit
def additive_kernel(X, Y, C, CB, S, PTR, OCOL, OVAL, M, N, K, J_PAD, stride_xm,
                    NCB: tl.constexpr, B: tl.constexpr, HAS_OUT: tl.constexpr, ATOMIC: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr):
    """``Y[m, n] (+)= S[n] sum_j <X[m, 8j:8j+8], sum_i CB[i, code_i(j, n)]>`` over this program's K tiles."""
    BLOCK_J: tl.constexpr = BLOCK_K // 8
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    pid_m = tl.program_id(2)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < N
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = offs_m < M
    e = tl.arange(0, 8)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for t in range(pid_k, J_PAD // BLOCK_J, SPLIT_K):
        offs_j = t * BLOCK_J + tl.arange(0, BLOCK_J)
        c = tl.load(C + offs_j[:, None] * N + offs_n[None, :], mask=n_mask[None, :], other=0).to(tl.int32) & 0xFFFF
        w = tl.zeros((BLOCK_J, BLOCK_N, 8), dtype=tl.float32)
        for i in tl.static_range(NCB):
            code = (c >> (i * B)) & ((1 << B) - 1)
            w += tl.load(CB + (i << B) * 8 + code[:, :, None] * 8 + e[None, None, :]).to(tl.float32)
        if BLOCK_M == 1:
            k = offs_j[:, None] * 8 + e[None, :]
            x = tl.load(X + offs_m * stride_xm + k, mask=(k < K) & m_mask, other=0.0).to(tl.float32)
            acc += tl.sum(tl.sum(w * x[:, None, :], axis=2), axis=0)[None, :]
        else:
            x = load_x(X, stride_xm, offs_m, m_mask, t * BLOCK_K + tl.arange(0, BLOCK_K), K, X, False, BLOCK_M)
            w2 = tl.reshape(tl.permute(w, (0, 2, 1)), (BLOCK_K, BLOCK_N))
            acc = tl.dot(x, w2.to(x.dtype), acc)
    acc *= tl.load(S + offs_n, mask=n_mask, other=0.0).to(tl.float32)[None, :]
    if HAS_OUT:
        acc = add_outliers(acc, X, stride_xm, offs_m, m_mask, offs_n, n_mask, PTR, OCOL, OVAL, pid_k == 0)
    store_y(Y, acc, offs_m, m_mask, offs_n, n_mask, N, ATOMIC)


def _launch(st: AdditiveState, x: Tensor, c: Config) -> Tensor:
    m, (n, k) = x.shape[0], st.shape
    bm = block_m(m)
    atomic = c.split_k > 1
    y = output(m, n, atomic, x)
    o = st.outliers
    grid = (triton.cdiv(n, c.block_n), c.split_k, triton.cdiv(m, bm))
    additive_kernel[grid](
        x, y, st.codes, st.codebooks, st.scales, o.indptr if o else y, o.cols if o else y, o.delta if o else y,
        m, n, k, st.codes.shape[0], x.stride(0), NCB=st.n_codebooks, B=st.bits, HAS_OUT=o is not None,
        ATOMIC=atomic, BLOCK_M=bm, BLOCK_N=c.block_n, BLOCK_K=c.block_k, SPLIT_K=c.split_k,
        num_warps=c.num_warps, num_stages=c.num_stages)
    return y


def configs(st: AdditiveState, m: int) -> list[Config]:
    return candidates(m, st.codes.shape[0] * GROUP, lambda bk: bk >= 64)


def run(st: AdditiveState, x: Tensor, config: Config | None = None) -> Tensor:
    """``x @ W_hat^T``: ``x`` ``(M, d_in)`` -> ``(M, d_out)`` in ``x``'s dtype (fp16 activations, fp32
    accumulation). ``config`` forces a launch configuration (tests)."""
    xa = as_activations(x)
    if config is None:
        key = ("additive", *st.shape, st.n_codebooks, st.bits, st.outliers is not None, block_m(xa.shape[0]),
               xa.dtype)
        config = choose(key, configs(st, xa.shape[0]), lambda c: _launch(st, xa, c), xa.device)
    return _launch(st, xa, config).to(x.dtype)
