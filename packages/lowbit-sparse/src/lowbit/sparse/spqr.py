"""SpQR's column quantizer for the GPTQ loop (Dettmers et al., arXiv 2306.03078).

Inside GPTQ (columns in processing order j, ``U`` the upper Cholesky factor of the damped ``H^-1``):

- **Small groups**: every ``group_size`` (16) consecutive columns get per-row asymmetric min-max
  parameters ``(s, z)`` over exactly ``[min, max]`` with a continuous zero
  (:func:`lowbit.core.uniform.minmax_params` with ``zero_in_range=False``), fit when the loop reaches
  the group's first column, on the error-updated columns; ``q = s (clamp(round(w / s + z), 0,
  2^b - 1) - z)``.
- **Second-order statistics**: a group's scales ``s`` ``(d_out,)`` and zeros ``z`` are themselves
  quantized to ``stat_bits`` (3) bits in groups of ``stat_group`` (16) consecutive rows, min-max
  with continuous second-level zero, second-level scale and zero stored in fp16; the weights are
  quantized with the dequantized statistics (what is stored).
- **Outliers**: with ``e = (w - q) / U_jj`` (GPTQ's scaled error), a weight is an outlier when
  ``e^2 > tau * mean_c(Var_r(W[:, c]) / U_cc^2)`` (relative threshold ``tau``; the normaliser is
  computed once, on the weight before the loop, as in the reference). Before a group's fit, a
  leave-one-out pass scores each weight by how much the group's Hessian-scaled error
  ``sum_c ((w_c - q_c) / U_cc)^2`` drops when the grid is fit without it; weights scoring above the
  threshold are replaced by the mean of the row's other weights for the fit. Outliers keep their
  (fp16-rounded) value, so their error in the feedback is zero, and are stored as
  :class:`lowbit.core.formats.SparseOutliers` (:func:`lowbit.sparse.outliers_from_mask`).

The result is a ``"uniform"`` QuantizedWeight with ``second_order`` statistics and outliers; its
accounting (:func:`lowbit.core.bits.bit_report`) is ``b + (3 + 3) / 16 + 2 (16 + 16) / 256`` bits
per weight (the paper's figure) plus the outliers' values and indices and, with act-order, the
group index of each column. This module follows the ColumnQuantizer protocol of ``lowbit.recon`` by
shape, without importing it; it needs the whole factor ``U`` in each call (None: round-to-nearest,
``U_jj = 1``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lowbit.core.formats import QuantizedWeight
from lowbit.core.uniform import check_width, dequantize_affine, minmax_params, quantize_affine_continuous

from .storage import outliers_from_mask


def quantize_statistic(x: Tensor, bits: int, group: int, dtype: torch.dtype = torch.float16) -> QuantizedWeight:
    """Second-order quantization of statistics ``x`` ``(n_groups, d_out)`` (one row per first-level
    group): min-max over groups of ``group`` consecutive entries, continuous zero, second-level
    scale and zero rounded to ``dtype``. Returns a uniform QuantizedWeight (``zero_bits`` = the
    dtype's width) whose ``dequantize()`` is the statistic used."""
    G, d = x.shape
    s2, z2 = minmax_params(x.reshape(-1, group), bits, zero_in_range=False)
    s2 = s2.to(dtype).to(x.dtype).reshape(G, d // group)
    z2 = z2.to(dtype).to(x.dtype).reshape(G, d // group)
    codes = quantize_affine_continuous(x, s2.repeat_interleave(group, 1), z2.repeat_interleave(group, 1), bits)
    return QuantizedWeight("uniform", (G, d), codes.to(torch.uint8), bits, scales=s2, zeros=z2,
                           group_size=group, zero_bits=torch.finfo(dtype).bits)


def leave_one_out_reduction(Wg: Tensor, d: Tensor, bits: int) -> Tensor:
    """``(d_out, g)`` drop of a group's Hessian-scaled error when each weight is left out of the fit.

    ``base_r = sum_c ((w_rc - q_rc) / d_c)^2`` with the min-max grid of all ``g`` weights of row r;
    ``loo_rt`` the same sum over the other ``g - 1`` weights with the grid fit without weight t.
    Returns ``base_r - loo_rt``.

    Args:
        Wg: ``(d_out, g)`` the group's columns; d: ``(g,)`` their ``U_cc``.
    """
    d_out, g = Wg.shape
    idx = torch.arange(g, device=Wg.device)
    keep = idx[1:] - (idx[:, None] >= idx[1:]).to(idx.dtype)  # (g, g - 1): every column but t
    Wl = Wg[:, keep].reshape(-1, g - 1)  # (d_out * g, g - 1)
    s, z = minmax_params(Wl, bits, zero_in_range=False)
    q = dequantize_affine(quantize_affine_continuous(Wl, s[:, None], z[:, None], bits), s[:, None], z[:, None])
    loo = (((Wl - q) / d[keep].repeat(d_out, 1)) ** 2).sum(1).reshape(d_out, g)
    s, z = minmax_params(Wg, bits, zero_in_range=False)
    q = dequantize_affine(quantize_affine_continuous(Wg, s[:, None], z[:, None], bits), s[:, None], z[:, None])
    base = (((Wg - q) / d) ** 2).sum(1, keepdim=True)
    return base - loo


class SpQRColumnQuantizer:
    """SpQR: b-bit groups of 16 with 3-bit second-order statistics and unstructured fp16 outliers.

    Args:
        bits: weight code width.
        group_size: input columns per first-level group (16).
        stat_bits: width of the quantized scales and zeros (3); None keeps them in fp16.
        stat_group: output rows per second-level group (16).
        outlier_threshold: relative threshold tau (0.2 in the reference); ``inf`` disables outliers.
        simplified_outliers: skip the leave-one-out pass before each group fit.
        value_dtype: storage dtype of outlier values (fp16).
    """

    def __init__(self, bits: int, group_size: int = 16, *, stat_bits: int | None = 3, stat_group: int = 16,
                 outlier_threshold: float = 0.2, simplified_outliers: bool = False,
                 value_dtype: torch.dtype = torch.float16) -> None:
        check_width(bits)
        if stat_bits is not None:
            check_width(stat_bits)
        if group_size < 2:
            raise ValueError(f"group size must be at least 2, got {group_size}")
        self.bits = bits
        self.group_size = group_size
        self.stat_bits = stat_bits
        self.stat_group = stat_group
        self.tau = outlier_threshold
        self.simplified = simplified_outliers
        self.value_dtype = value_dtype
        self.block_multiple = group_size

    def prepare(self, W: Tensor, perm: Tensor) -> None:
        d_out, d_in = W.shape
        if d_in % self.group_size:
            raise ValueError(f"group size {self.group_size} does not divide the input dimension {d_in}")
        if self.stat_bits is not None and d_out % self.stat_group:
            raise ValueError(f"statistics group {self.stat_group} does not divide the output dimension {d_out}")
        self.shape = (d_out, d_in)
        self.perm = perm
        G = d_in // self.group_size
        self.scales = torch.empty(G, d_out, device=W.device)
        self.zeros = torch.empty(G, d_out, device=W.device)
        self.mask = torch.zeros(d_out, d_in, dtype=torch.bool, device=W.device)  # processing order
        self._var = W.var(dim=0)  # (d_in,) before any update, for the threshold's normaliser
        self._thr: float | None = None
        self._stats: list[tuple[QuantizedWeight, QuantizedWeight]] = []

    def _threshold(self, U: Tensor | None) -> float:
        if self._thr is None:
            self._diag = U.diagonal().float() if U is not None else torch.ones_like(self._var)
            self._thr = self.tau * float((self._var / self._diag ** 2).mean())
        return self._thr

    def _fit_group(self, Wg: Tensor, j: int, thr: float) -> None:
        """Group parameters on its current columns ``Wg`` ``(d_out, g)``, likely outliers left out."""
        if thr != float("inf") and not self.simplified:
            d = self._diag[j: j + Wg.shape[1]]
            likely = leave_one_out_reduction(Wg, d, self.bits) > thr
            keep = (~likely).to(Wg.dtype)
            mean = (Wg * keep).sum(1, keepdim=True) / keep.sum(1, keepdim=True).clamp_min(1)
            Wg = torch.where(likely, mean, Wg)
        s, z = minmax_params(Wg, self.bits, zero_in_range=False)
        g = j // self.group_size
        if self.stat_bits is not None:
            qs = quantize_statistic(s[None], self.stat_bits, self.stat_group)
            qz = quantize_statistic(z[None], self.stat_bits, self.stat_group)
            self._stats.append((qs, qz))
            s, z = qs.dequantize()[0], qz.dequantize()[0]
        self.scales[g], self.zeros[g] = s, z
        self._s, self._z = s, z

    def __call__(self, W: Tensor, i: int, j: int, U: Tensor | None) -> Tensor:
        """The grid value of column ``i``, or the (fp16-rounded) weight itself at outliers."""
        thr = self._threshold(U)
        if j % self.group_size == 0:
            self._fit_group(W[:, i: i + self.group_size], j, thr)
        w = W[:, i]
        s, z = self._s, self._z
        q = s * (quantize_affine_continuous(w, s.clamp_min(1e-12), z, self.bits) - z)
        if thr == float("inf"):
            return q
        out = ((w - q) / self._diag[j]) ** 2 > thr
        self.mask[:, j] = out
        return torch.where(out, w.to(self.value_dtype).to(w.dtype), q)

    def result(self, Q: Tensor) -> QuantizedWeight:
        """Codes of the grid values in ``Q``; statistics (second-order when quantized); outliers."""
        d_out, d_in = self.shape
        gs = self.group_size
        g_idx = None
        identity = bool((self.perm == torch.arange(d_in, device=self.perm.device)).all())
        if not identity:
            g_idx = torch.empty(d_in, dtype=torch.int64, device=self.perm.device)
            g_idx[self.perm] = torch.arange(d_in, device=self.perm.device) // gs
        g = (torch.arange(d_in, device=Q.device) // gs) if g_idx is None else g_idx.to(Q.device)
        s, z = self.scales.T, self.zeros.T  # (d_out, G)
        codes = quantize_affine_continuous(Q, s[:, g].clamp_min(1e-12), z[:, g], self.bits).to(torch.uint8)
        mask = torch.empty_like(self.mask)
        mask[:, self.perm] = self.mask
        outliers = outliers_from_mask(Q, mask, self.value_dtype) if self.tau != float("inf") else None
        second: dict[str, QuantizedWeight] = {}
        scales: Tensor | None = s
        zeros: Tensor | None = z
        if self.stat_bits is not None:
            second = {"scales": _stack([a for a, _ in self._stats]), "zeros": _stack([b for _, b in self._stats])}
            scales = zeros = None
        return QuantizedWeight("uniform", self.shape, codes, self.bits, scales=scales, zeros=zeros, group_size=gs,
                               g_idx=g_idx, outliers=outliers, zero_bits=None if second else 16,
                               second_order=second)


def _stack(parts: list[QuantizedWeight]) -> QuantizedWeight:
    """One ``(G, d_out)`` statistic from the per-group ``(1, d_out)`` ones, in group order."""
    first = parts[0]
    assert first.scales is not None and first.zeros is not None
    return QuantizedWeight("uniform", (len(parts), first.shape[1]), torch.cat([p.codes for p in parts]), first.bits,
                           scales=torch.cat([p.scales for p in parts if p.scales is not None]),
                           zeros=torch.cat([p.zeros for p in parts if p.zeros is not None]),
                           group_size=first.group_size, zero_bits=first.zero_bits)
