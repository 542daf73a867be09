"""CPU batch-1 GEMVs by table lookup for the non-uniform formats: ``table``, ``binary``, ``additive``.

Batch-1 decoding is bound by the weight bytes, and these formats store codes that index value sets, so
each call first builds, from ``x`` alone, a small table of partial dot products, and the compiled loop
(``csrc/gemv_lut.c``, built and loaded by :mod:`lowbit.kernels.cpu`) then only gathers and adds while
reading the packed codes once:

- ``table`` (per-column tables, CLAQ / CMPQ): ``u[c, k] = x_c T[c, k]`` (``(d_in, 16)``), then
  ``y_n = sum_c u[c, q_nc]`` over 4-bit codes. Widths below 4 (one width, or mixed per-column widths)
  are widened to 4-bit codes in this layout: 4 bits per weight moved whatever the stored width.
- ``binary`` (BCQ / GPTQT, arXiv 2407.02891), bit-serial as in LUT-GEMM (arXiv 2206.09557): with
  ``s_i = 2 b_i - 1``, ``sum_{c in g} x_c (o + sum_i a_i s_i) = (o - sum_i a_i) xs_g + 2 sum_i a_i S_i``,
  ``S_i = sum_{c in g, b_i(c) = 1} x_c``; the bit planes are stored as bytes of 8 inputs and ``S_i`` is a
  sum of lookups ``P[b, byte]``, ``P[b, v] = sum_{t: bit t of v} x_{8b + t}`` (``(d_in / 8, 256)``).
  k bits per weight moved (the stored width), k lookups per 8 weights. Chosen over per-row tables of
  ``2^k`` values, which would move the expanded values (``2^k`` floats per (row, group)) or need a
  per-(row, group) table build each call.
- ``additive`` (AQLM, arXiv 2401.06118), groups of 8, B <= 8: ``P[(j, m), k] = <x_j, C_m[k]>``
  (``(d_in / 8 * M, 2^B)``, padded to 256 columns), then ``y_n = s_n sum_{j, m} P[(j, m), c_njm]``:
  B bits per code, M codes per 8 weights (2x8: 2 bits per weight, 1x8: 1 bit).

Sparse outliers add ``sum_k (v_k - W_grid[r_k, c_k]) x_{c_k}`` (as in :mod:`lowbit.kernels.cpu`);
act-order ``g_idx`` of binary weights permutes the columns once. ``x`` is one row (batch 1), float32.
"""

from __future__ import annotations

import ctypes
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lowbit.core.formats import QuantizedWeight

from .cpu import _library, available

__all__ = ["available", "prepare_additive", "prepare_binary", "prepare_table", "run", "supports_additive",
           "supports_binary", "supports_table"]

_P = ctypes.c_void_p
_BITS8 = ((torch.arange(256)[:, None] >> torch.arange(8)) & 1).float()  # (256, 8): bit t of byte v


def supports_table(meta: dict[str, Any]) -> bool:
    """``table`` weights with tables of at most 16 entries (one width 1..4 or per-column widths) and
    ``d_in`` a multiple of 32 (the kernel needs column pairs; 32 keeps tiny layers on the reference)."""
    if meta.get("format") != "table" or int(meta.get("table_size", 16)) > 16 or int(meta["shape"][1]) % 32:
        return False
    bits = meta.get("bits")
    return bits == "per_column" or (isinstance(bits, int) and 1 <= bits <= 4)


def supports_binary(meta: dict[str, Any]) -> bool:
    """``binary`` codes of 1..8 bits in groups of a multiple of 8 inputs dividing ``d_in``."""
    if meta.get("format") != "binary" or not isinstance(meta.get("bits"), int):
        return False
    d_in = int(meta["shape"][1])
    gs = int(meta.get("group_size") or d_in)
    return 1 <= int(meta["bits"]) <= 8 and gs % 8 == 0 and d_in % gs == 0


def supports_additive(meta: dict[str, Any]) -> bool:
    """``additive`` codes of B <= 8 bits (AQLM 1x8, 2x8, ...) with groups of 8 inputs."""
    return (meta.get("format") == "additive" and int(meta.get("group_size", 0)) == 8
            and 1 <= int(meta.get("bits", 0)) <= 8 and int(meta.get("n_codebooks", 0)) >= 1)


@dataclass
class Outliers:
    """Sparse corrections ``y[rows] += delta * x[cols]``, ``delta = value - grid value``."""

    rows: Tensor
    cols: Tensor
    delta: Tensor


@dataclass
class LutState:
    """One weight in a lookup kernel's layout; ``kind`` is ``"lut4"``, ``"bcq"`` or ``"lut8"``."""

    kind: str
    shape: tuple[int, int]
    codes: Tensor  # uint8: lut4 (N/16, K/2, 16) nibbles; bcq (N, G, k, gs/8) bit planes; lut8 (N, K/8 * M)
    values: Tensor  # lut4: tables (K, 16); bcq: 2 alpha (N, G, k); lut8: codebooks (M * 2^B, 8)
    scales: Tensor | None = None  # lut8: (N,) row scales; bcq: offset - sum alpha (N, G)
    group_size: int = 0
    bits: int = 0
    perm: Tensor | None = None  # bcq: (K,) column order that makes groups contiguous
    outliers: Outliers | None = None


def _outliers(qw: QuantizedWeight) -> Outliers | None:
    """``value - W_grid[r, c]`` for each sparse outlier (None when there are none)."""
    o = qw.outliers
    if o is None or not o.nnz:
        return None
    rows, cols = o.rows.long().cpu(), o.cols.long().cpu()
    grid = dataclasses.replace(qw, outliers=None).dequantize()[rows, cols]
    return Outliers(rows, cols, o.values.float().cpu() - grid)


def pack_nibbles_16rows(codes: Tensor) -> Tensor:
    """``(N, K)`` codes < 16 (K even) -> ``(ceil(N / 16), K / 2, 16)`` uint8: blocks of 16 rows (zero
    padded), byte r of column pair p holds ``q[16b + r, 2p] | q[16b + r, 2p + 1] << 4``."""
    n, k = codes.shape
    q = torch.zeros(-(-n // 16) * 16, k, dtype=torch.long)
    q[:n] = codes.long()
    q = q.reshape(-1, 16, k // 2, 2)
    return (q[..., 0] | (q[..., 1] << 4)).to(torch.uint8).permute(0, 2, 1).contiguous()


def bit_planes(codes: Tensor, bits: int, group_size: int) -> Tensor:
    """``(N, K)`` k-bit codes -> ``(N, G, k, gs / 8)`` uint8: plane i is bit ``k - 1 - i`` (alpha_i's
    bit, :func:`lowbit.core.formats.binary_code_values`), byte b holds inputs ``8b .. 8b + 7`` of the
    group, input ``8b + t`` in bit t."""
    n, k = codes.shape
    c = codes.long().reshape(n, k // group_size, 1, group_size // 8, 8)
    shift = (bits - 1 - torch.arange(bits)).reshape(1, 1, bits, 1, 1)
    b = (c >> shift) & 1  # (N, G, k, gs/8, 8)
    return (b << torch.arange(8)).sum(-1).to(torch.uint8).contiguous()


def prepare_table(qw: QuantizedWeight) -> LutState:
    """Per-column tables ``(d_in, 16)`` float32 and codes as 4-bit nibbles (widths < 4 widened)."""
    assert qw.tables is not None
    t = torch.zeros(qw.shape[1], 16)
    t[:, : qw.tables.shape[1]] = qw.tables.float().cpu()
    return LutState("lut4", qw.shape, pack_nibbles_16rows(qw.codes.cpu()), t, outliers=_outliers(qw))


def prepare_binary(qw: QuantizedWeight) -> LutState:
    """Bit planes, ``2 alpha`` ``(N, G, k)`` and ``offset - sum alpha`` ``(N, G)`` float32."""
    assert qw.alphas is not None and qw.offsets is not None
    d_out, d_in = qw.shape
    gs, k = qw.group_size or d_in, int(qw.bits)  # type: ignore[arg-type]
    codes, perm = qw.codes.cpu(), None
    if qw.g_idx is not None:
        perm = torch.argsort(qw.g_idx.cpu(), stable=True)
        if not torch.equal(qw.g_idx.cpu()[perm], torch.arange(d_in) // gs):
            raise ValueError("g_idx groups are not all of group_size columns")
        codes = codes[:, perm]
    alphas, offsets = qw.alphas.float().cpu(), qw.offsets.float().cpu()
    return LutState("bcq", qw.shape, bit_planes(codes, k, gs), (2 * alphas).contiguous(),
                    (offsets - alphas.sum(-1)).contiguous(), gs, k, perm, _outliers(qw))


def prepare_additive(qw: QuantizedWeight) -> LutState:
    """Codes ``(N, d_in / 8 * M)`` uint8 (group-major, then codebook), codebooks ``(M 2^B, 8)``, scales."""
    assert qw.codebooks is not None and qw.scales is not None
    cb = qw.codebooks.float().cpu()
    codes = qw.codes.cpu().to(torch.uint8).reshape(qw.shape[0], -1).contiguous()
    return LutState("lut8", qw.shape, codes, cb.reshape(-1, cb.shape[-1]).contiguous(),
                    qw.scales.float().cpu().reshape(-1).contiguous(), qw.group_size or 8, int(qw.bits),  # type: ignore[arg-type]
                    outliers=_outliers(qw))


def _call(name: str, *args: Tensor | int) -> None:
    lib = _library()
    assert lib is not None
    conv = [_P(a.data_ptr()) if isinstance(a, Tensor) else ctypes.c_long(a) for a in args]
    getattr(lib, name)(*conv, ctypes.c_int(torch.get_num_threads()))


def _run_lut4(st: LutState, x: Tensor, y: Tensor) -> None:
    """``u[c, k] = x_c T[c, k]`` ``(K, 16)``, then ``y_n = sum_c u[c, q_nc]``."""
    u = (x[:, None] * st.values).contiguous()
    yp = torch.empty(st.codes.shape[0] * 16)
    _call("lowbit_gemv_lut4", u, st.codes, yp, yp.numel(), st.shape[1])
    y.copy_(yp[: st.shape[0]])


def _run_bcq(st: LutState, x: Tensor, y: Tensor) -> None:
    """``P[b, v] = sum_{t: bit t of v} x_{8b+t}`` ``(K / 8, 256)`` and group sums ``xs`` ``(G,)``."""
    xk = (x[st.perm] if st.perm is not None else x).contiguous()
    P = (xk.reshape(-1, 8) @ _BITS8.T).contiguous()
    xs = xk.reshape(-1, st.group_size).sum(1)
    assert st.scales is not None
    _call("lowbit_gemv_bcq", P, st.codes, st.values, st.scales, xs, y, st.shape[0], st.shape[1], st.group_size,
          st.bits)


def _run_lut8(st: LutState, x: Tensor, y: Tensor) -> None:
    """``P[(j, m), k] = <x_j, C_m[k]>`` ``(K / 8 * M, 256)`` (columns beyond ``2^B`` unused)."""
    P = (x.reshape(-1, 8) @ st.values.T).reshape(-1, 1 << st.bits)
    if st.bits < 8:
        P = torch.nn.functional.pad(P, (0, 256 - P.shape[1]))
    assert st.scales is not None
    _call("lowbit_gemv_lut8", P, st.codes, st.scales, y, st.shape[0], P.shape[0])


_RUNS = {"lut4": _run_lut4, "bcq": _run_bcq, "lut8": _run_lut8}


def run(st: LutState, x: Tensor) -> Tensor:
    """``x @ W_hat^T`` for ``x`` ``(1, d_in)`` -> ``(1, d_out)`` in ``x``'s dtype (float32 inside)."""
    xv = x.reshape(st.shape[1]).float().contiguous()
    y = torch.empty(st.shape[0], dtype=torch.float32)
    _RUNS[st.kind](st, xv, y)
    if st.outliers is not None:
        o = st.outliers
        y.index_add_(0, o.rows, o.delta * xv[o.cols])
    return y.reshape(1, -1).to(x.dtype)
