"""The one bit-accounting function: what a quantized layer or model costs, part by part.

Every stored part is counted:

- ``codes``: sum over weights of the code width (per-column widths counted column by column);
- ``scales``: 16 bits per scale (fp16); ``zeros``: the code width per integer zero point (``zero_bits``
  per zero when set, e.g. 16 for continuous zeros);
- second-order statistics (SpQR): the codes of the quantized scales / zeros count as ``scales`` /
  ``zeros``, their own (second-level) scales and zeros as ``second_order``;
- ``coefficients``: 16 bits per binary-coding coefficient and per offset (``binary`` format, k + 1
  per row and group);
- ``codebooks``: 16 bits per codebook entry (``additive`` format: M x 2^B x g per layer);
- ``tables``: 16 bits per used table entry (2^b_c entries for column c);
- ``g_idx``: ceil(log2 n_groups) bits per input column when groups are not contiguous;
- ``outlier_values``: ``value_bits`` per outlier; ``outlier_indices``: the cheaper of CSR and CSC,
  nnz * ceil(log2 d) for the inner index plus (d' + 1) * ceil(log2(nnz + 1)) for the pointers.

``bits_per_weight`` is the total over the number of weights. The figure a paper would quote
(often codes only) can be added under ``paper`` by the recipe, labelled as such.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from torch import Tensor

from .formats import QuantizedWeight, SparseOutliers

PARTS = ("codes", "scales", "zeros", "second_order", "tables", "coefficients", "codebooks", "g_idx",
         "outlier_values", "outlier_indices")


def _log2ceil(n: int) -> int:
    return max(1, math.ceil(math.log2(n))) if n > 1 else 0


@dataclass
class BitReport:
    """Bits of each stored part (``parts``), for ``n_weights`` weights."""

    n_weights: int
    parts: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PARTS, 0.0))

    @property
    def total_bits(self) -> float:
        return float(sum(self.parts.values()))

    @property
    def bits_per_weight(self) -> float:
        return self.total_bits / self.n_weights if self.n_weights else 0.0

    def per_weight(self) -> dict[str, float]:
        """Each part in bits per weight."""
        return {k: v / self.n_weights for k, v in self.parts.items()} if self.n_weights else {}

    def __add__(self, other: BitReport) -> BitReport:
        parts = {k: self.parts.get(k, 0.0) + other.parts.get(k, 0.0)
                 for k in dict.fromkeys([*self.parts, *other.parts])}
        return BitReport(self.n_weights + other.n_weights, parts)

    def to_dict(self) -> dict[str, object]:
        return {"bits_per_weight": self.bits_per_weight, "n_weights": self.n_weights,
                "total_bits": self.total_bits, "per_weight": self.per_weight()}


def _code_bits(qw: QuantizedWeight) -> float:
    d_out, d_in = qw.shape
    if qw.format == "additive":  # M codes of B bits per group of g weights
        return float(qw.bits) * qw.codes.numel()
    if isinstance(qw.bits, Tensor):
        return float(qw.bits.sum().item()) * d_out
    return float(qw.bits) * d_out * d_in


def outlier_index_bits(outliers: SparseOutliers, shape: tuple[int, int]) -> float:
    """Index cost of ``outliers`` in the cheaper of CSR (row pointers) and CSC (column pointers)."""
    nnz = outliers.nnz
    if nnz == 0:
        return 0.0
    d_out, d_in = shape
    ptr = _log2ceil(nnz + 1)
    csr = nnz * _log2ceil(d_in) + (d_out + 1) * ptr
    csc = nnz * _log2ceil(d_out) + (d_in + 1) * ptr
    return float(min(csr, csc))


def bit_report(qw: QuantizedWeight) -> BitReport:
    """Every stored bit of one quantized layer, by part."""
    d_out, d_in = qw.shape
    r = BitReport(d_out * d_in)
    r.parts["codes"] = _code_bits(qw)
    if qw.scales is not None:
        r.parts["scales"] = 16.0 * qw.scales.numel()
    if qw.zeros is not None:
        zbits = qw.zero_bits or (qw.bits if isinstance(qw.bits, int) else int(qw.bits.max()))
        r.parts["zeros"] = float(zbits) * qw.zeros.numel()
    for name, stat in qw.second_order.items():
        inner = bit_report(stat)
        r.parts[name] += inner.parts["codes"]
        r.parts["second_order"] += inner.total_bits - inner.parts["codes"]
    if qw.alphas is not None and qw.offsets is not None:
        r.parts["coefficients"] = 16.0 * (qw.alphas.numel() + qw.offsets.numel())
    if qw.codebooks is not None:
        r.parts["codebooks"] = 16.0 * qw.codebooks.numel()
    if qw.tables is not None:
        widths = qw.bits if isinstance(qw.bits, Tensor) else None
        used = (2 ** widths).sum().item() if widths is not None else qw.tables.shape[0] * 2 ** qw.bits
        r.parts["tables"] = 16.0 * float(used)
    if qw.g_idx is not None:
        r.parts["g_idx"] = float(d_in * _log2ceil(int(qw.g_idx.max()) + 1))
    if qw.outliers is not None:
        r.parts["outlier_values"] = float(qw.outliers.nnz * qw.outliers.value_bits)
        r.parts["outlier_indices"] = outlier_index_bits(qw.outliers, qw.shape)
    return r


def model_bit_report(layers: Iterable[QuantizedWeight]) -> BitReport:
    """The sum of :func:`bit_report` over layers: bits per weight of the quantized linears."""
    total = BitReport(0)
    for qw in layers:
        total = total + bit_report(qw)
    return total
