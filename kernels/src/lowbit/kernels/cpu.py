"""The CPU batch-1 decode path: a GEMV that reads 4-bit codes and group scales, not a dense weight.

Why this shape: batch-1 decoding is memory-bound (each weight is used once per token), so the win
is moving fewer bytes. We measured the alternatives on the 2-core development machine for a
4096 x 4096 layer (dense fp32 ``x @ W.T``: ~10-16 ms): torch's own ``_weight_int4pack_mm_for_cpu``
in fp32 ~42 ms, ``torch.compile`` (Inductor C++) of unpack + dequantize + reduce ~46 ms, eager
torch unpacking ~235 ms; a plain C loop (below) compiled once with the system C compiler
(``-O3 -march=native -fopenmp``) and called through ``ctypes``: ~11-13 ms, and ~11 ms for the
4096 x 11008 layer against ~22 ms dense. The loop uses the factorisation

    y_n = sum_g s_ng * (sum_{c in g} x_c q_nc) - (s_ng z_ng) * (sum_{c in g} x_c),

so the inner loop is an integer-to-float conversion and one FMA per weight (no per-weight scale).
Uniform weights of 1..4 bits use it (codes widened to nibbles: 4 bits per weight moved, 8x less than
fp32); act-order ``g_idx`` is handled by permuting the columns once so groups are contiguous; sparse
outliers add ``sum_k (v_k - W_hat[r_k, c_k]) x_{c_k}`` with a scatter. Without a C compiler the
path reports itself unavailable and the kernel table falls back to the torch reference.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from lowbit.core.formats import QuantizedWeight

log = logging.getLogger(__name__)

_CSRC = Path(__file__).with_name("csrc")


# Vectorised float reductions need reassociation, but not -ffast-math: with it (or -Ofast,
# -funsafe-math-optimizations) GCC links crtfastmath.o, whose constructor turns on flush-to-zero and
# denormals-are-zero for the whole process the moment the library is loaded.
CFLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fassociative-math",
          "-fno-signed-zeros", "-fopenmp")


def _cache_dir() -> Path:
    return Path(os.environ.get("LOWBIT_HOME", Path.home() / ".cache" / "lowbit")).expanduser() / "kernels"


@functools.cache
def _library() -> ctypes.CDLL | None:
    """Compile every ``csrc/*.c`` into one library (once per source version, cached under
    ``$LOWBIT_HOME/kernels``) and load it; None without a working C compiler."""
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        return None
    srcs = sorted(_CSRC.glob("*.c"))
    flags = list(CFLAGS)
    digest = hashlib.sha256(" ".join(flags).encode() + b"".join(s.name.encode() + s.read_bytes() for s in srcs)
                            ).hexdigest()[:16]
    so = _cache_dir() / f"lowbit_cpu-{digest}.so"
    if not so.exists():
        so.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=so.parent) as tmp:
            out = Path(tmp) / so.name
            cmd = [cc, *flags, "-shared", "-fPIC", *map(str, srcs), "-o", str(out)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                log.warning("CPU kernel not built (%s): %s", " ".join(cmd), r.stderr[-500:])
                return None
            os.replace(out, so)  # atomic: concurrent builders each install a complete file
    lib = ctypes.CDLL(str(so))
    for fn in ("lowbit_gemv_u4", "lowbit_gemv_lut4", "lowbit_gemv_lut8", "lowbit_gemv_bcq"):
        getattr(lib, fn).restype = None
    return lib


def available() -> bool:
    """Whether the compiled CPU kernel can be used on this machine."""
    return _library() is not None


def supports(meta: dict[str, object]) -> bool:
    """Uniform weights of 1..4 bits whose groups have an even size dividing ``d_in``."""
    if meta.get("format") != "uniform" or not isinstance(meta.get("bits"), int):
        return False
    bits = int(meta["bits"])  # type: ignore[call-overload]
    d_in = int(meta["shape"][1])  # type: ignore[index]
    gs = int(meta.get("group_size") or d_in)  # type: ignore[call-overload]
    return 1 <= bits <= 4 and gs % 2 == 0 and d_in % gs == 0


@dataclass
class U4State:
    """The kernel layout of one uniform weight (see the module docstring)."""

    packed: Tensor  # (N, K / 2) uint8, half-split nibbles per group
    scales: Tensor  # (N, G) float32
    scaled_zeros: Tensor  # (N, G) float32: s * z
    group_size: int
    perm: Tensor | None  # (K,) column order that makes groups contiguous, or None
    out_rows: Tensor | None  # outliers: rows, columns, value minus grid value
    out_cols: Tensor | None
    out_delta: Tensor | None


def prepare(qw: QuantizedWeight) -> U4State:
    """Repack a uniform ``qw`` into the kernel layout."""
    d_out, d_in = qw.shape
    gs = qw.group_size or d_in
    scales, zeros = qw.group_params()
    codes = qw.codes.long()
    perm = None
    if qw.g_idx is not None:
        perm = torch.argsort(qw.g_idx, stable=True)
        if not torch.equal(qw.g_idx[perm], torch.arange(d_in) // gs):
            raise ValueError("g_idx groups are not all of group_size columns")
        codes = codes[:, perm]
    q = codes.reshape(d_out, d_in // gs, 2, gs // 2)
    packed = (q[:, :, 0] | (q[:, :, 1] << 4)).to(torch.uint8).reshape(d_out, d_in // 2).contiguous()
    rows = cols = delta = None
    if qw.outliers is not None and qw.outliers.nnz:
        o = qw.outliers
        rows, cols = o.rows.long(), o.cols.long()
        g = qw.group_index()[cols]
        grid = scales[rows, g] * (qw.codes[rows, cols].float() - zeros[rows, g])
        delta = o.values.float() - grid
    return U4State(packed, scales.float().contiguous(), (scales * zeros).float().contiguous(), gs, perm,
                   rows, cols, delta)


def gemv(state: U4State, x: Tensor) -> Tensor:
    """``x @ W_hat^T`` for one row ``x`` ``(1, K)`` float32 -> ``(1, N)`` float32."""
    lib = _library()
    assert lib is not None
    N, K = state.packed.shape[0], state.packed.shape[1] * 2
    xv = x.reshape(K).float()
    xk = (xv[state.perm] if state.perm is not None else xv).contiguous()
    xs = xk.view(-1, state.group_size).sum(1)
    y = torch.empty(N, dtype=torch.float32)
    ptr = ctypes.c_void_p
    lib.lowbit_gemv_u4(ptr(xk.data_ptr()), ptr(state.packed.data_ptr()), ptr(state.scales.data_ptr()),
                       ptr(state.scaled_zeros.data_ptr()), ptr(xs.data_ptr()), ptr(y.data_ptr()),
                       ctypes.c_long(N), ctypes.c_long(K), ctypes.c_long(state.group_size),
                       ctypes.c_int(torch.get_num_threads()))
    if state.out_delta is not None:
        assert state.out_rows is not None and state.out_cols is not None
        y.index_add_(0, state.out_rows, state.out_delta * xv[state.out_cols])
    return y.reshape(1, N)
