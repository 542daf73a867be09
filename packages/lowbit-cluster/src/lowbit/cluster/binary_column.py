"""GPTQT's column quantizer for the GPTQ loop (arXiv 2407.02891): quantize twice, store binary codes.

Per output row ``r`` (and group of input columns, when ``group_size`` is set; groups are fit when
the loop reaches their first column, on the error-updated columns, as in GPTQ):

1. **Step one**: an n-bit min-max grid ``(s_r, z_r)`` (:func:`lowbit.core.uniform.minmax_params`)
   puts every weight on an integer level ``l = clamp(round(w / s) + z, 0, 2^n - 1)``.
2. **Step two**: the row's ``2^n`` levels are fit exactly by a k-bit binary code
   ``o + sum_i alpha_i s_i`` (:func:`lowbit.cluster.binary_code.fit_binary_code`), weighted by the
   row's level histogram. (One code shared by all rows of a layer fits badly: the rows' zero points
   differ, so their histograms sit at different levels.) Cost: ``C(2^n + 2^k - 1, 2^k - 1)`` small
   solves per row and multiplier: 165 (n = 3, k = 2), 969 (n = 4, k = 2), 490,314 (n = 4, k = 3: a
   GPU job).
3. **Merged**: row r's values are ``s_r (o + sum_i alpha_i s_i - z_r)``, i.e. a binary code with
   coefficients ``s_r alpha_i`` and offset ``s_r (o - z_r)``: the ``"binary"`` format
   (k coefficients + 1 offset per row and group, fp16).
4. **Re-explore**: the binary code's extreme values sit inside the step-one range, so the step-one
   scale is searched over ``multipliers`` (``s_r <- m s_r``, zero kept): for each ``m`` a code is fit
   to that histogram, and each row keeps the ``m`` whose merged values give it the smallest squared
   error on its weights.

Every weight is quantized to the nearest of its row's ``2^k`` merged values, and error feedback uses
that final value. With ``first_bits=None`` there is no step one: each row's code is fit to its raw
weights (:func:`lowbit.cluster.binary_code.fit_binary_code_values`, greedy + alternating least
squares), plain binary coding, the baseline GPTQT improves on.

This module follows the ColumnQuantizer protocol of ``lowbit.recon`` by shape, without importing it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lowbit.core.formats import QuantizedWeight, binary_code_values
from lowbit.core.uniform import check_width, minmax_params

from .binary_code import MAX_EXACT_BITS, fit_binary_code, fit_binary_code_values
from .kmeans1d import nearest_centroid_1d

REEXPLORE = (1.0, 1.1, 1.2, 1.3, 1.4)


class BinaryCodeColumnQuantizer:
    """k-bit binary codes per (row, group), fit through an n-bit step one (GPTQT) or directly (BCQ).

    Args:
        bits: binary code bits k (1..3 with a step one).
        first_bits: step-one width n (> k), or None for plain binary coding of the weights.
        group_size: input columns per group (None: one code per row, fit on the original weight).
        multipliers: step-one scale multipliers searched ("re-explore"); ``(1.0,)`` turns it off.
        bcq_iters: alternating least-squares steps of the plain fit.
        coef_dtype: storage dtype of coefficients and offsets (fp16: 16 bits each in the accounting).
    """

    def __init__(self, bits: int, first_bits: int | None = None, group_size: int | None = None, *,
                 multipliers: Sequence[float] = REEXPLORE, bcq_iters: int = 20,
                 coef_dtype: torch.dtype = torch.float16) -> None:
        if first_bits is not None:
            check_width(first_bits)
            if not 1 <= bits <= min(MAX_EXACT_BITS, first_bits):
                raise ValueError(f"binary bits must be in 1..{min(MAX_EXACT_BITS, first_bits)} after a "
                                 f"{first_bits}-bit step one, got {bits}")
        elif not 1 <= bits <= 8:
            raise ValueError(f"binary bits must be in 1..8, got {bits}")
        if not multipliers or min(multipliers) <= 0:
            raise ValueError("multipliers must be positive")
        self.bits = bits
        self.first_bits = first_bits
        self.group_size = group_size
        self.multipliers = tuple(multipliers)
        self.bcq_iters = bcq_iters
        self.coef_dtype = coef_dtype
        self.block_multiple = group_size or 1

    def prepare(self, W: Tensor, perm: Tensor) -> None:
        d_out, d_in = W.shape
        gs = self.group_size or d_in
        if d_in % gs:
            raise ValueError(f"group size {gs} does not divide the input dimension {d_in}")
        self.shape = (d_out, d_in)
        self.perm = perm
        self._cols = perm.tolist()
        n_groups = d_in // gs
        self.alphas = torch.zeros(d_out, n_groups, self.bits, device=W.device)
        self.offsets = torch.zeros(d_out, n_groups, device=W.device)
        self._values = torch.zeros(d_out, n_groups, 1 << self.bits, device=W.device)  # sorted per row
        self._group = -1
        if self.group_size is None:  # one code per row, on the original weight
            self._fit_group(W, 0)

    def _fit_group(self, Wg: Tensor, g: int) -> None:
        """Fit group ``g``'s codes on its current columns ``Wg`` ``(d_out, m)``."""
        if self.first_bits is None:
            code = fit_binary_code_values(Wg, self.bits, iters=self.bcq_iters)
            alphas, offsets = code.alphas, code.offsets
        else:
            alphas, offsets = self._two_step(Wg)
        alphas = alphas.to(self.coef_dtype).to(Wg.dtype)  # what is stored
        offsets = offsets.to(self.coef_dtype).to(Wg.dtype)
        self.alphas[:, g], self.offsets[:, g] = alphas, offsets
        self._values[:, g] = binary_code_values(alphas, offsets).sort(dim=1).values

    def _two_step(self, Wg: Tensor) -> tuple[Tensor, Tensor]:
        """Step one, step two and re-explore (module docstring): merged ``(alphas, offsets)``."""
        n, maxq = self.first_bits, (1 << int(self.first_bits or 0)) - 1
        assert n is not None
        scale, zero = minmax_params(Wg, n)
        m = torch.tensor(self.multipliers, dtype=Wg.dtype, device=Wg.device)
        s = scale[None, :] * m[:, None]  # (M, d_out)
        levels = torch.clamp(torch.round(Wg[None] / s[..., None]) + zero[None, :, None], 0, maxq)
        M, d_out = s.shape
        counts = torch.zeros(M * d_out, maxq + 1, dtype=torch.float64, device=Wg.device)
        lv = levels.reshape(M * d_out, -1).long()
        counts.scatter_add_(1, lv, torch.ones_like(lv, dtype=torch.float64))
        code = fit_binary_code(counts, self.bits)  # one code per (multiplier, row), on integer levels
        a = code.alphas.to(Wg.dtype).reshape(M, d_out, -1)
        o = code.offsets.to(Wg.dtype).reshape(M, d_out)
        alphas = s[..., None] * a  # (M, d_out, k) merged
        offsets = s * (o - zero[None, :])
        values = binary_code_values(alphas, offsets).sort(dim=2).values  # (M, d_out, K)
        err = torch.stack([_nearest_error(Wg, v) for v in values])  # (M, d_out)
        best = err.argmin(0)
        rows = torch.arange(Wg.shape[0], device=Wg.device)
        return alphas[best, rows], offsets[best, rows]

    def __call__(self, W: Tensor, i: int, j: int, U: Tensor | None) -> Tensor:
        """The nearest of the row's merged binary-code values to column ``i``."""
        gs = self.group_size or self.shape[1]
        g = j // gs
        if self.group_size is not None and g != self._group:
            self._fit_group(W[:, i: i + gs], g)
            self._group = g
        values = self._values[:, g]
        w = W[:, i]
        return values.gather(1, nearest_centroid_1d(w[:, None], values))[:, 0]

    def result(self, Q: Tensor) -> QuantizedWeight:
        """Codes of the final values ``Q`` among each row's (and group's) ``2^k`` values."""
        d_out, d_in = self.shape
        gs = self.group_size or d_in
        g_idx = None
        identity = bool((self.perm == torch.arange(d_in, device=self.perm.device)).all())
        if self.group_size is not None and not identity:
            g_idx = torch.empty(d_in, dtype=torch.int64, device=self.perm.device)
            g_idx[self.perm] = torch.arange(d_in, device=self.perm.device) // gs
        g = (torch.arange(d_in, device=Q.device) // gs) if g_idx is None else g_idx.to(Q.device)
        table = binary_code_values(self.alphas, self.offsets)  # (d_out, G, K) in code order
        diff = (Q[:, :, None] - table[:, g]).abs()
        codes = diff.argmin(2)
        return QuantizedWeight("binary", self.shape, codes.to(torch.uint8), self.bits, group_size=self.group_size,
                               g_idx=g_idx, alphas=self.alphas.to(self.coef_dtype),
                               offsets=self.offsets.to(self.coef_dtype))


def _nearest_error(x: Tensor, values: Tensor) -> Tensor:
    """``(P,)`` squared error of ``x`` ``(P, m)`` on the nearest of sorted ``values`` ``(P, K)``."""
    q = values.gather(1, nearest_centroid_1d(x, values))
    return ((x - q) ** 2).sum(1)
