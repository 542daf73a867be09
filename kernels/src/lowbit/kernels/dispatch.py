"""The kernel table: the fastest available path for (format, device, batch size), the torch reference last.

A :class:`Kernel` says which stored weights it handles (``supports(meta)``, the storage meta of
:mod:`lowbit.core.storage`), on which device type, up to which batch (rows of ``x``), whether it
can run here (``available()``), how to turn the decoded weight into its own layout once
(``prepare(qw)``) and how to multiply (``run(state, x) = x @ W_hat^T``, ``x`` 2-D). :func:`select`
walks :data:`KERNELS` in order; a new kernel (a Triton GEMV, a table-lookup path) is one more entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lowbit.core.formats import QuantizedWeight

from . import cpu, cpu_lut
from . import triton as gpu

Meta = dict[str, Any]


@dataclass(frozen=True)
class Kernel:
    name: str
    device: str | None  # device type ("cpu", "cuda"), None: any
    max_batch: int | None  # rows of x at most, None: any
    supports: Callable[[Meta], bool]
    available: Callable[[], bool]
    prepare: Callable[[QuantizedWeight], Any]
    run: Callable[[Any, Tensor], Tensor]


def reference_prepare(qw: QuantizedWeight) -> Tensor:
    """The reference keeps the dense ``W_hat = qw.dequantize()`` (d_out, d_in)."""
    return qw.dequantize(torch.float32)


def reference_run(w: Tensor, x: Tensor) -> Tensor:
    """``y = x @ W_hat^T``: ``x`` (B, d_in) -> (B, d_out), exactly the in-memory quantized model."""
    return x @ w.to(device=x.device, dtype=x.dtype).T


REFERENCE = Kernel("reference", None, None, lambda meta: True, lambda: True, reference_prepare, reference_run)

KERNELS: list[Kernel] = [
    Kernel("cpu_gemv_u4", "cpu", 1, cpu.supports, cpu.available, cpu.prepare,
           lambda state, x: cpu.gemv(state, x).to(x.dtype)),
    Kernel("cpu_lut_table", "cpu", 1, cpu_lut.supports_table, cpu_lut.available, cpu_lut.prepare_table, cpu_lut.run),
    Kernel("cpu_lut_binary", "cpu", 1, cpu_lut.supports_binary, cpu_lut.available, cpu_lut.prepare_binary,
           cpu_lut.run),
    Kernel("cpu_lut_additive", "cpu", 1, cpu_lut.supports_additive, cpu_lut.available, cpu_lut.prepare_additive,
           cpu_lut.run),
    *(Kernel(name, "cuda", gpu.MAX_BATCH, supports, gpu.available, prepare, run)
      for name, supports, prepare, run in gpu.ENTRIES),
    REFERENCE,
]


def select(meta: Meta, device: torch.device | str, batch: int, prefer: str | None = None) -> Kernel:
    """The first kernel of :data:`KERNELS` for this weight, device and batch (``prefer``: by name,
    if it qualifies); the reference when none does."""
    dev = torch.device(device).type
    for k in KERNELS:
        if prefer is not None and k.name != prefer:
            continue
        if (k.device in (None, dev) and (k.max_batch is None or batch <= k.max_batch)
                and k.supports(meta) and k.available()):
            return k
    return REFERENCE


def by_name(name: str) -> Kernel:
    for k in KERNELS:
        if k.name == name:
            return k
    raise ValueError(f"unknown kernel {name!r}; known: {[k.name for k in KERNELS]}")
