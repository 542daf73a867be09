"""QuantizedWeight: one container for every format, with the reference ``dequantize()``.

A linear layer's weight ``W`` (d_out x d_in, y = x W^T) is stored as integer codes plus the value
set they index, optionally plus full-precision sparse outliers that replace entries:

- ``"uniform"``: affine grid per (row, group of input columns): ``W_hat[r, c] =
  scales[r, g(c)] * (codes[r, c] - zeros[r, g(c)])`` with ``g(c) = c // group_size``, or
  ``g_idx[c]`` when the groups are not contiguous (GPTQ act-order without static groups).
- ``"table"``: one lookup table per input column (CLAQ, CMPQ): ``W_hat[r, c] = tables[c, codes[r, c]]``;
  ``bits`` may be a per-column tensor of widths, table rows beyond ``2^bits[c]`` are unused.

Codes are kept unpacked (one integer per weight) in memory: the container is the math, and
:mod:`lowbit.core.packing` produces the storage layout. Other formats (additive codebooks,
binary codes) join ``_DEQUANTIZERS`` as their methods land.
"""

from __future__ import annotations

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
        """Split a per-row format (``uniform``) into consecutive row blocks of ``sizes`` rows.

        Used when layers that share a Hessian (q, k, v) were quantized as one stacked weight.
        """
        if self.format != "uniform":
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
            assert self.scales is not None and self.zeros is not None
            parts.append(QuantizedWeight(
                self.format, (n, self.shape[1]), self.codes[rows], self.bits, self.scales[rows],
                self.zeros[rows], self.group_size, self.g_idx, None, out, dict(self.meta)))
            start += n
        return parts

    def group_index(self) -> Tensor:
        """``(d_in,)`` group of each input column (uniform format)."""
        d_in = self.shape[1]
        if self.g_idx is not None:
            return self.g_idx
        gs = self.group_size or d_in
        return torch.arange(d_in, device=self.codes.device) // gs


def _dequantize_uniform(qw: QuantizedWeight) -> Tensor:
    assert qw.scales is not None and qw.zeros is not None
    g = qw.group_index().to(qw.codes.device)
    scales = qw.scales.float()[:, g]
    zeros = qw.zeros.float()[:, g]
    return scales * (qw.codes.float() - zeros)


def _dequantize_table(qw: QuantizedWeight) -> Tensor:
    assert qw.tables is not None
    cols = torch.arange(qw.shape[1], device=qw.codes.device)
    return qw.tables.float()[cols[None, :], qw.codes.long()]


_DEQUANTIZERS: dict[str, Callable[[QuantizedWeight], Tensor]] = {
    "uniform": _dequantize_uniform,
    "table": _dequantize_table,
}
