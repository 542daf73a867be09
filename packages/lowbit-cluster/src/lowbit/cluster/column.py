"""CLAQ's k-means column quantizer for the GPTQ loop (arXiv 2405.17233).

Inside GPTQ, when the loop reaches input column ``c`` (after error feedback has updated it), the
column's current values ``w = W[:, c]`` (d_out points) get ``2^{b_c}`` centroids by weighted 1-D
k-means (:func:`kmeans_1d`), and every weight is snapped to its nearest centroid:

    q_r = T_c[a_r],   a_r = argmin_l |w_r - T_c[l]|,   T_c = kmeans_1d(w, 2^{b_c}).

Per-column widths ``b_c`` come from an allocator (``lowbit.alloc``); reserved entries (a boolean
mask from ``lowbit.sparse``) get zero weight in the fit and keep their updated value exactly (zero
error in the feedback); they are stored as sparse outliers. The result is a ``"table"``
QuantizedWeight: codes, one table per column (fp16 entries), per-column widths, outliers.

This module follows the ColumnQuantizer protocol of ``lowbit.recon`` by shape, without importing it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lowbit.core.formats import QuantizedWeight, SparseOutliers
from lowbit.core.uniform import check_width

from .kmeans1d import kmeans_1d, nearest_centroid_1d
from .kmeans1d_host import fit_host


class KMeansColumnQuantizer:
    """Per-column k-means tables with per-column widths and reserved full-precision entries.

    Args:
        widths: an int (every column) or a ``(d_in,)`` tensor of widths in 1..8, original column order.
        reserved: optional ``(d_out, d_in)`` bool mask of entries kept in full precision.
        iters: Lloyd iterations at most per fit.
        seed: base seed; column ``c`` is fit with ``seed + c`` (deterministic whatever the order).
        table_dtype: dtype the tables are stored in (fp16: 16 bits per entry in the accounting).
        backend: ``"numpy"`` (default: the column is fit on the host, 0.3 to 0.7 ms, and GPTQ runs
            each block's column loop on the host, ``host_loop``, whatever device W is on) or a
            :func:`kmeans_1d` backend (``"torch"``: 5 to 35 ms per column on any device, launch-bound).
    """

    block_multiple = 1

    def __init__(self, widths: int | Tensor, reserved: Tensor | None = None, *, iters: int = 100,
                 seed: int = 0, table_dtype: torch.dtype = torch.float16, backend: str = "numpy") -> None:
        self.widths = widths
        self.reserved = reserved
        self.iters = iters
        self.seed = seed
        self.table_dtype = table_dtype
        self.backend = backend
        self.host_loop = backend == "numpy"

    def prepare(self, W: Tensor, perm: Tensor) -> None:
        d_out, d_in = W.shape
        widths = torch.full((d_in,), self.widths) if isinstance(self.widths, int) else self.widths.cpu()
        if widths.shape != (d_in,):
            raise ValueError(f"widths must have shape ({d_in},), got {tuple(widths.shape)}")
        for b in set(widths.tolist()):
            check_width(int(b))
        if self.reserved is not None and self.reserved.shape != (d_out, d_in):
            raise ValueError(f"reserved mask must have shape {(d_out, d_in)}, got {tuple(self.reserved.shape)}")
        self.shape = (d_out, d_in)
        self._widths = widths.to(torch.int64)
        self._bits = self._widths.tolist()
        self._cols = perm.tolist()
        loop_device = torch.device("cpu") if self.host_loop else W.device
        self.tables = torch.zeros(d_in, 1 << max(self._bits), device=loop_device)
        self._mask = None if self.reserved is None else self.reserved.to(loop_device)

    def __call__(self, W: Tensor, i: int, j: int, U: Tensor | None) -> Tensor:
        col = self._cols[j]
        k = 1 << self._bits[col]
        w = W[:, i]
        keep = None if self._mask is None else (~self._mask[:, col]).to(w.dtype)[None]
        table = self._fit(w, k, keep, col).to(self.table_dtype).to(w.dtype)  # the values that are stored
        table = torch.sort(table).values
        self.tables[col, :k] = table
        self.tables[col, k:] = table[-1]  # unused entries repeat the last (never chosen: ties go low)
        q = table[nearest_centroid_1d(w[None], table[None])[0]]
        return q if self._mask is None else torch.where(self._mask[:, col], w, q)

    def _fit(self, w: Tensor, k: int, keep: Tensor | None, col: int) -> Tensor:
        """``(k,)`` centroids of column values ``w`` (points weighted by ``keep``)."""
        if self.backend != "numpy":
            return kmeans_1d(w[None], k, keep, iters=self.iters, seed=self.seed + col,
                             backend=self.backend).centroids[0]
        wn = None if keep is None else keep.detach().cpu().numpy()
        cent, _ = fit_host(w.detach().cpu().numpy()[None], wn, k, self.iters, self.seed + col,
                           2 + int(math.log(k)))
        return torch.from_numpy(cent[0]).to(w)

    def result(self, Q: Tensor) -> QuantizedWeight:
        """Codes of the final values ``Q`` in their column's table, reserved entries as outliers."""
        tables = self.tables.to(Q.device)
        codes = nearest_centroid_1d(Q.T.contiguous(), tables).T
        outliers = None
        if self._mask is not None:
            rows, cols = self._mask.to(Q.device).nonzero(as_tuple=True)
            values = Q[rows, cols].to(self.table_dtype)
            outliers = SparseOutliers(rows, cols, values, value_bits=torch.finfo(self.table_dtype).bits)
        return QuantizedWeight("table", self.shape, codes.to(torch.uint8), self._widths.to(Q.device),
                               tables=tables.to(self.table_dtype), outliers=outliers)
