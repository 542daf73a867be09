"""Uniform 1..4-bit weights with group scales and zeros: ``y = x @ W_hat^T`` in one Triton launch.

``W_hat[n, k] = s[g(k), n] (q[k, n] - z[g(k), n])`` with ``g(k) = k // group_size`` (the ``uniform``
format of :mod:`lowbit.core.formats`; GPTQ, arXiv 2210.17323; SpQR's second-order statistics are
dequantized once at prepare). Layout built once by :func:`prepare`:

- codes in bit planes packed along the inputs (:func:`lowbit.kernels.triton.common.pack_planes`);
- scales and zeros ``(d_in / g, d_out)`` fp16, transposed so a tile's ``BLOCK_N`` consecutive rows
  are one coalesced load per group (integer zeros are exact in fp16);
- act-order (``g_idx``, GPTQ's ``desc_act``): columns permuted once so that groups are contiguous
  (each group must hold exactly ``group_size`` columns, as GPTQ produces), and the kernel reads
  ``x[perm[k]]`` (a gather on the small activation vector, no extra launch);
- sparse outliers in the same pass (:func:`lowbit.kernels.triton.common.add_outliers`).

A tile of ``BLOCK_K`` inputs covers ``NG = BLOCK_K / GK`` groups of ``GK = min(BLOCK_K, g)`` inputs:
scales are loaded once per group and row, broadcast over the group (``BLOCK_K`` divides g or g
divides ``BLOCK_K``; the tuner only offers those).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor

from lowbit.core.formats import QuantizedWeight

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
    store_y,
)


@dataclass
class UniformState:
    """The kernel layout of one uniform weight (see the module docstring)."""

    planes: list[Tensor]  # per plane (d_in w / 32, d_out) int32
    scales: Tensor  # (d_in / g, d_out) fp16
    zeros: Tensor  # (d_in / g, d_out) fp16
    perm: Tensor | None  # (d_in,) int32 input column of each kernel column (act-order), or None
    outliers: Outliers | None
    bits: int
    group_size: int
    shape: tuple[int, int]



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


def prepare(qw: QuantizedWeight, device: torch.device | str | None = None) -> UniformState:
    """Re-layout a uniform ``qw`` for the kernel (once), on ``device`` (default: where ``qw`` is)."""
    dev = torch.device(device) if device is not None else qw.codes.device
    d_out, d_in = qw.shape
    gs = qw.group_size or d_in
    scales, zeros = qw.group_params()
    codes = qw.codes.to(dev)
    perm = group_perm(qw)
    if perm is not None:
        perm = perm.to(dev)
        codes = codes[:, perm]
    bits = int(qw.bits)
    return UniformState(pack_planes(codes, bits), scales.T.to(dev, torch.float16).contiguous(),
                        zeros.T.to(dev, torch.float16).contiguous(), None if perm is None else perm.to(torch.int32),
                        grid_outliers(qw, dev), bits, gs, (d_out, d_in))


@triton.jit
def uniform_kernel(X, Y, Q0, Q1, S, Z, PERM, PTR, OCOL, OVAL, M, N, K, stride_xm,
                   GS: tl.constexpr, GK: tl.constexpr, NG: tl.constexpr, W0: tl.constexpr, W1: tl.constexpr,
                   HAS_PERM: tl.constexpr, HAS_OUT: tl.constexpr, ATOMIC: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr):
    """``Y[m, n] (+)= sum_k X[m, perm(k)] s[k // GS, n] (q[k, n] - z[k // GS, n])`` over this program's
    K tiles ``pid_k, pid_k + SPLIT_K, ...`` (see :mod:`lowbit.kernels.triton.common`)."""
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    pid_m = tl.program_id(2)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < N
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = offs_m < M
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for t in range(pid_k, K // BLOCK_K, SPLIT_K):
        k0 = t * BLOCK_K
        q = load_codes(Q0, Q1, k0, offs_n, n_mask, N, BLOCK_K, BLOCK_N, W0, W1)
        g = k0 // GS + tl.arange(0, NG)
        s = tl.load(S + g[:, None] * N + offs_n[None, :], mask=n_mask[None, :], other=0.0).to(tl.float32)
        z = tl.load(Z + g[:, None] * N + offs_n[None, :], mask=n_mask[None, :], other=0.0).to(tl.float32)
        w = (tl.reshape(q, (NG, GK, BLOCK_N)).to(tl.float32) - z[:, None, :]) * s[:, None, :]
        x = load_x(X, stride_xm, offs_m, m_mask, k0 + tl.arange(0, BLOCK_K), K, PERM, HAS_PERM, BLOCK_M)
        acc = accumulate(acc, x, tl.reshape(w, (BLOCK_K, BLOCK_N)), BLOCK_M)
    if HAS_OUT:
        acc = add_outliers(acc, X, stride_xm, offs_m, m_mask, offs_n, n_mask, PTR, OCOL, OVAL, pid_k == 0)
    store_y(Y, acc, offs_m, m_mask, offs_n, n_mask, N, ATOMIC)


def _launch(st: UniformState, x: Tensor, c: Config) -> Tensor:
    m, (n, k) = x.shape[0], st.shape
    bm = block_m(m)
    atomic = c.split_k > 1
    y = output(m, n, atomic, x)
    planes = PLANES[st.bits]
    q1 = st.planes[1] if len(planes) > 1 else st.planes[0]
    o = st.outliers
    gk = min(c.block_k, st.group_size)
    grid = (triton.cdiv(n, c.block_n), c.split_k, triton.cdiv(m, bm))
    uniform_kernel[grid](
        x, y, st.planes[0], q1, st.scales, st.zeros, st.perm if st.perm is not None else st.scales,
        o.indptr if o else y, o.cols if o else y, o.delta if o else y, m, n, k, x.stride(0),
        GS=st.group_size, GK=gk, NG=c.block_k // gk, W0=planes[0], W1=planes[1] if len(planes) > 1 else 0,
        HAS_PERM=st.perm is not None, HAS_OUT=o is not None, ATOMIC=atomic, BLOCK_M=bm, BLOCK_N=c.block_n,
        BLOCK_K=c.block_k, SPLIT_K=c.split_k, num_warps=c.num_warps, num_stages=c.num_stages)
    return y


def configs(st: UniformState, m: int) -> list[Config]:
    gs = st.group_size
    return candidates(m, st.shape[1], lambda bk: bk % gs == 0 or gs % bk == 0)


def run(st: UniformState, x: Tensor, config: Config | None = None) -> Tensor:
    """``x @ W_hat^T``: ``x`` ``(M, d_in)`` -> ``(M, d_out)`` in ``x``'s dtype (computed with fp16
    activations, fp32 accumulation). ``config`` forces a launch configuration (tests)."""
    xa = as_activations(x)
    if config is None:
        cands = configs(st, xa.shape[0])
        key = ("uniform", *st.shape, st.bits, st.group_size, st.perm is not None, st.outliers is not None,
               block_m(xa.shape[0]), xa.dtype)
        config = choose(key, cands, lambda c: _launch(st, xa, c), xa.device)
    return _launch(st, xa, config).to(x.dtype)
