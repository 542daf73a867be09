"""The uniform (min-max, asymmetric) column quantizer, per output row, per group of input columns.

Group parameters follow GPTQ's reference (arXiv 2210.17323): with ``group_size`` g, the scale and
zero of a group are fit (min-max per row, :func:`lowbit.core.uniform.minmax_params`) on the
group's current, error-updated columns when the loop reaches the group's first column (groups
are consecutive in processing order; with act-order this needs a ``g_idx``), or, with
``static_groups``, on the original weight before any update (groups consecutive in the original
column order, so act-order costs nothing to store). Without groups one grid per row is fit on
the whole original weight.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lowbit.core.formats import QuantizedWeight
from lowbit.core.uniform import check_width, minmax_params, quantize_affine


def check_group_size(d_in: int, group_size: int | None) -> None:
    """Raise ``ValueError`` unless ``group_size`` is None or a positive divisor of ``d_in``."""
    if group_size is None:
        return
    if group_size < 1 or d_in % group_size:
        raise ValueError(f"group size {group_size} does not divide the input dimension {d_in}")


class UniformColumnQuantizer:
    """b-bit asymmetric min-max grid per (row, group); a :class:`~lowbit.recon.gptq.ColumnQuantizer`."""

    def __init__(self, bits: int, group_size: int | None = None, static_groups: bool = False) -> None:
        check_width(bits)
        self.bits = bits
        self.group_size = group_size
        self.static_groups = static_groups
        self.block_multiple = group_size or 1

    def prepare(self, W: Tensor, perm: Tensor) -> None:
        d_out, d_in = W.shape
        check_group_size(d_in, self.group_size)
        gs = self.group_size or d_in
        self.shape = (d_out, d_in)
        self.perm = perm
        self._cols = perm.tolist()
        self.scales = torch.empty(d_out, d_in // gs, device=W.device)
        self.zeros = torch.empty_like(self.scales)
        self._sticky = self.group_size is None or self.static_groups
        if self._sticky:
            Worig = torch.empty_like(W)
            Worig[:, perm] = W
            Wg = Worig.reshape(d_out, d_in // gs, gs)
            s, z = minmax_params(Wg.reshape(-1, gs), self.bits)
            self.scales[:] = s.reshape(d_out, -1)
            self.zeros[:] = z.reshape(d_out, -1)
        self._group = -1

    def _params(self, W: Tensor, i: int, j: int) -> tuple[Tensor, Tensor, Tensor]:
        gs = self.group_size or self.shape[1]
        g = self._cols[j] // gs if self._sticky else j // gs
        if g != self._group:
            if not self._sticky:  # fit on the group's current columns, which start here
                s, z = minmax_params(W[:, i: i + gs], self.bits)
                self.scales[:, g], self.zeros[:, g] = s, z
            s, z = self.scales[:, g], self.zeros[:, g]
            self._group, self._s, self._lo, self._hi = g, s, -z, (1 << self.bits) - 1 - z
        return self._s, self._lo, self._hi

    def __call__(self, W: Tensor, i: int, j: int, U: Tensor | None) -> Tensor:
        """``s * clamp(round(w / s), -z, 2^b - 1 - z)``: the grid value, in four tensor operations."""
        s, lo, hi = self._params(W, i, j)
        return torch.clamp(torch.round(W[:, i] / s), lo, hi).mul_(s)

    def result(self, Q: Tensor) -> QuantizedWeight:
        """Codes ``round(Q / s) + z`` of the grid values ``Q`` this quantizer returned."""
        d_in = self.shape[1]
        gs = self.group_size or d_in
        g_idx = None
        identity = bool((self.perm == torch.arange(d_in, device=self.perm.device)).all())
        if not self._sticky and not identity:
            g_idx = torch.empty(d_in, dtype=torch.int64, device=self.perm.device)
            g_idx[self.perm] = torch.arange(d_in, device=self.perm.device) // gs
        g = (torch.arange(d_in, device=Q.device) // gs) if g_idx is None else g_idx
        codes = quantize_affine(Q, self.scales[:, g], self.zeros[:, g], self.bits).to(torch.uint8)
        return QuantizedWeight("uniform", self.shape, codes, self.bits, scales=self.scales,
                               zeros=self.zeros, group_size=self.group_size, g_idx=g_idx)
