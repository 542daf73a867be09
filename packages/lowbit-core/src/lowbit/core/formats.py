"""QuantizedWeight: one container for every format, with the reference ``dequantize()``.

A linear layer's weight ``W`` (d_out x d_in, y = x W^T) is stored as integer codes plus the value
set they index, optionally plus full-precision sparse outliers that replace entries:

- ``"uniform"``: affine grid per (row, group of input columns): ``W_hat[r, c] =
  scales[r, g(c)] * (codes[r, c] - zeros[r, g(c)])`` with ``g(c) = c // group_size``, or
  ``g_idx[c]`` when the groups are not contiguous (GPTQ act-order without static groups).
- ``"table"``: one lookup table per input column (CLAQ, CMPQ): ``W_hat[r, c] = tables[c, codes[r, c]]``;
  ``bits`` may be a per-column tensor of widths, table rows beyond ``2^bits[c]`` are unused.
- ``"binary"``: k-bit binary coding per (row, group) (BCQ; GPTQT's merged format, arXiv 2407.02891):
  ``W_hat[r, c] = offsets[r, g] + sum_i alphas[r, g, i] * (2 b_i - 1)`` where ``b_i`` is bit
  ``k - 1 - i`` of ``codes[r, c]`` (:func:`binary_code_values`). Stored: k coefficients and one
  offset per (row, group), not the 2^k values they span.

- ``"additive"``: M codebooks of 2^B vectors of length g shared by the layer, a code per codebook for
  every (row, group of g consecutive inputs), one scale per row (AQLM, arXiv 2401.06118):
  ``W_hat[r, jg:(j+1)g] = scales[r] * sum_m codebooks[m, codes[r, j, m]]`` (:func:`additive_values`);
  ``codes`` is ``(d_out, d_in / g, M)``, ``bits`` is B, ``group_size`` is g.

Uniform zero points are integers at the code width unless ``zero_bits`` says otherwise (16: fp16,
continuous zeros). **Second-order statistics** (SpQR, arXiv 2306.03078): ``second_order["scales"]``
/ ``second_order["zeros"]`` hold the group scales / zeros themselves quantized, each a uniform
``QuantizedWeight`` of shape ``(n_groups, d_out)`` (the transposed ``(d_out, n_groups)`` statistics,
grouped along the output rows); the corresponding ``scales`` / ``zeros`` field is then None and
:meth:`QuantizedWeight.group_params` dequantizes them.

Codes are kept unpacked (one integer per weight) in memory: the container is the math, and
:mod:`lowbit.core.packing` produces the storage layout. New formats join ``_DEQUANTIZERS``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass
class SparseOutliers:
    """Full-precision entries that replace the quantized value at ``(rows[k], cols[k])``.

    ``values`` are stored at ``value_bits`` (16: fp16, the papers' convention).
    """

    rows: Tensor
    cols: Tensor
    values: Tensor
    value_bits: int = 16

    @property
    def nnz(self) -> int:
        return int(self.values.numel())

    def apply(self, w: Tensor) -> Tensor:
        """Return ``w`` with the outlier entries overwritten (a copy)."""
        out = w.clone()
        out[self.rows.to(w.device), self.cols.to(w.device)] = self.values.to(w)
        return out


@dataclass
class QuantizedWeight:
    """A quantized ``(d_out, d_in)`` weight; see the module docstring for the formats."""

    format: str
    shape: tuple[int, int]
    codes: Tensor
    bits: int | Tensor
    scales: Tensor | None = None
    zeros: Tensor | None = None
    group_size: int | None = None
    g_idx: Tensor | None = None
    tables: Tensor | None = None
    outliers: SparseOutliers | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    zero_bits: int | None = None
    second_order: dict[str, QuantizedWeight] = field(default_factory=dict)
    alphas: Tensor | None = None
    offsets: Tensor | None = None
    codebooks: Tensor | None = None

    def group_params(self) -> tuple[Tensor, Tensor]:
        """``(scales, zeros)``, each ``(d_out, n_groups)`` float, of the uniform format: the stored
        tensors, or the dequantized second-order statistics."""
        out = []
        for name in ("scales", "zeros"):
            t = getattr(self, name)
            if t is None:
                if name not in self.second_order:
                    raise ValueError(f"uniform format without {name}")
                t = self.second_order[name].dequantize().T
            out.append(t.float())
        return out[0], out[1]

    def dequantize(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """The reference dense weight ``(d_out, d_in)`` in plain torch."""
        try:
            fn = _DEQUANTIZERS[self.format]
        except KeyError:
            raise ValueError(f"unknown format {self.format!r}; known: {sorted(_DEQUANTIZERS)}") from None
        w = fn(self).to(dtype)
        if self.outliers is not None and self.outliers.nnz:
            w = self.outliers.apply(w)
        return w

    def split_rows(self, sizes: list[int]) -> list[QuantizedWeight]:
        """Split a per-row format (``uniform``, ``binary``) into consecutive row blocks of ``sizes`` rows.

        Used when layers that share a Hessian (q, k, v) were quantized as one stacked weight.
        Second-order statistics are split along their row groups (each split must align with them).
        """
        if self.format not in ("uniform", "binary"):
            raise ValueError(f"format {self.format!r} shares per-column parameters across rows; "
                             "it cannot be split by rows")
        if sum(sizes) != self.shape[0]:
            raise ValueError(f"row sizes {sizes} do not add up to {self.shape[0]}")
        parts, start = [], 0
        for n in sizes:
            rows = slice(start, start + n)
            out = None
            if self.outliers is not None:
                keep = (self.outliers.rows >= start) & (self.outliers.rows < start + n)
                out = SparseOutliers(self.outliers.rows[keep] - start, self.outliers.cols[keep],
                                     self.outliers.values[keep], self.outliers.value_bits)
            take = lambda t: None if t is None else t[rows]  # noqa: E731
            parts.append(dataclasses.replace(
                self, shape=(n, self.shape[1]), codes=self.codes[rows], scales=take(self.scales),
                zeros=take(self.zeros), alphas=take(self.alphas), offsets=take(self.offsets), outliers=out,
                meta=dict(self.meta),
                second_order={k: _split_cols(v, start, n) for k, v in self.second_order.items()}))
            start += n
        return parts

    def group_index(self) -> Tensor:
        """``(d_in,)`` group of each input column (uniform format)."""
        d_in = self.shape[1]
        if self.g_idx is not None:
            return self.g_idx
        gs = self.group_size or d_in
        return torch.arange(d_in, device=self.codes.device) // gs


def _split_cols(qw: QuantizedWeight, start: int, n: int) -> QuantizedWeight:
    """Columns ``start:start + n`` of a uniform weight with contiguous groups (second-order
    statistics, whose columns are the outer weight's rows)."""
    gs = qw.group_size or qw.shape[1]
    if qw.format != "uniform" or qw.g_idx is not None or start % gs or n % gs:
        raise ValueError(f"cannot split columns {start}:{start + n} of groups of {gs}")
    cols, groups = slice(start, start + n), slice(start // gs, (start + n) // gs)
    assert qw.scales is not None and qw.zeros is not None
    return dataclasses.replace(qw, shape=(qw.shape[0], n), codes=qw.codes[:, cols], scales=qw.scales[:, groups],
                               zeros=qw.zeros[:, groups], meta=dict(qw.meta))


def binary_code_values(alphas: Tensor, offsets: Tensor) -> Tensor:
    """The ``2^k`` values ``offset + sum_i alpha_i (2 b_i - 1)`` of binary codes, code ``j`` having
    ``b_i`` = bit ``k - 1 - i`` of ``j`` (so alpha_1 goes with the most significant bit).

    Args:
        alphas: ``(..., k)`` coefficients; offsets: ``(...)``.
    Returns:
        ``(..., 2^k)`` values in code order (ascending when ``alpha_1 >= ... >= alpha_k >= 0`` and
        ``alpha_1 >= alpha_2 + ... + alpha_k``).
    """
    k = alphas.shape[-1]
    j = torch.arange(1 << k, device=alphas.device)
    values = offsets[..., None].expand(*offsets.shape, 1 << k)
    for i in range(k):  # elementwise, in a fixed order: the same values whatever the batch shape
        sign = (((j >> (k - 1 - i)) & 1) * 2 - 1).to(alphas.dtype)
        values = values + alphas[..., i, None] * sign
    return values


def additive_values(codes: Tensor, codebooks: Tensor, scales: Tensor) -> Tensor:
    """``(d_out, n * g)`` weight of additive codes: row r, group j is ``scales[r] * sum_m
    codebooks[m, codes[r, j, m]]``.

    Args:
        codes: ``(d_out, n, M)`` integer; codebooks: ``(M, 2^B, g)``; scales: ``(d_out,)``.
    Differentiable in ``codebooks`` and ``scales``.
    """
    groups = codebooks[0][codes[..., 0].long()]
    for m in range(1, codebooks.shape[0]):
        groups = groups + codebooks[m][codes[..., m].long()]
    return scales[:, None] * groups.reshape(codes.shape[0], -1)


def _dequantize_additive(qw: QuantizedWeight) -> Tensor:
    assert qw.codebooks is not None and qw.scales is not None
    return additive_values(qw.codes, qw.codebooks.float(), qw.scales.float().reshape(-1))


def _dequantize_uniform(qw: QuantizedWeight) -> Tensor:
    g = qw.group_index().to(qw.codes.device)
    scales, zeros = qw.group_params()
    return scales[:, g] * (qw.codes.float() - zeros[:, g])


def _dequantize_binary(qw: QuantizedWeight) -> Tensor:
    assert qw.alphas is not None and qw.offsets is not None
    g = qw.group_index().to(qw.codes.device)
    values = binary_code_values(qw.alphas.float(), qw.offsets.float())  # (d_out, n_groups, 2^k)
    return values[:, g].gather(2, qw.codes.long()[..., None])[..., 0]


def _dequantize_table(qw: QuantizedWeight) -> Tensor:
    assert qw.tables is not None
    cols = torch.arange(qw.shape[1], device=qw.codes.device)
    return qw.tables.float()[cols[None, :], qw.codes.long()]


_DEQUANTIZERS: dict[str, Callable[[QuantizedWeight], Tensor]] = {
    "uniform": _dequantize_uniform,
    "table": _dequantize_table,
    "binary": _dequantize_binary,
    "additive": _dequantize_additive,
}
