"""Triton GPU kernels for every stored format: ``y = x @ W_hat^T`` for x of 1..64 rows, fp16 activations,
fp32 accumulation, reading the packed weight once (batch-1 decoding is bound by the weight bytes).

| module | formats |
|---|---|
| :mod:`.uniform` | ``uniform`` 1..4 bits, groups of 32k inputs, act-order, SpQR second-order statistics |
| :mod:`.uniform` | ``binary`` (codes affine in their bits, per (group, row)), as one 1-bit plane per bit |
| :mod:`.column_tables` | ``table`` (per-column tables, one width or mixed widths; looked up in registers) |
| :mod:`.additive` | ``additive`` (AQLM 2x8 and 1x16, groups of 8) |

Sparse outliers are added in the same pass by every kernel; shared pieces (bit-plane layout, loads,
the tuner) are in :mod:`.common`. Importing this package does not import ``triton``: the kernel table
(:mod:`lowbit.kernels.dispatch`) sees only :data:`ENTRIES`, whose ``supports`` read the storage meta and
whose ``prepare`` / ``run`` import the kernel module on first use.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

import torch

MAX_BATCH = 64
MAX_INPUTS = 65536  # outlier columns are stored in 16 bits


@functools.cache
def available() -> bool:
    """Whether ``triton`` imports and a CUDA device is present."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def _grouped(meta: dict[str, Any]) -> bool:
    """Integer widths 1..4 and groups of a multiple of 32 inputs dividing ``d_in`` (per-channel: d_in)."""
    if not isinstance(meta.get("bits"), int):
        return False
    d_in = int(meta["shape"][1])
    gs = int(meta.get("group_size") or d_in)
    return 1 <= int(meta["bits"]) <= 4 and gs % 32 == 0 and d_in % gs == 0 and d_in <= MAX_INPUTS


def supports_uniform(meta: dict[str, Any]) -> bool:
    """``uniform`` weights of 1..4 bits, groups of a multiple of 32 (act-order ``g_idx`` included, with
    every group of ``group_size`` columns: checked at prepare)."""
    return meta.get("format") == "uniform" and _grouped(meta)


def supports_binary(meta: dict[str, Any]) -> bool:
    """``binary`` codes of 1..4 bits, groups of a multiple of 32 (act-order included)."""
    return meta.get("format") == "binary" and _grouped(meta)


def supports_table(meta: dict[str, Any]) -> bool:
    """``table`` weights of one width 1..4 or per-column widths (any ``d_in``: columns are padded at prepare)."""
    if meta.get("format") != "table" or int(meta["shape"][1]) > MAX_INPUTS or int(meta.get("table_size", 16)) > 16:
        return False
    bits = meta.get("bits")
    return bits == "per_column" or (isinstance(bits, int) and 1 <= bits <= 4)


def supports_additive(meta: dict[str, Any]) -> bool:
    """``additive`` codes with groups of 8 inputs and M codebooks of B bits, ``M B <= 16`` (2x8, 1x16)."""
    if meta.get("format") != "additive":
        return False
    m, b = int(meta.get("n_codebooks", 0)), int(meta.get("bits", 0))
    return int(meta.get("group_size", 0)) == 8 and m >= 1 and m * b <= 16 and int(meta["shape"][1]) <= MAX_INPUTS


def _lazy(module: str, fn: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(f"{__name__}.{module}"), fn)(*args, **kwargs)

    call.__name__ = f"{module}.{fn}"
    return call


def _on_cuda(prepare: Callable[..., Any]) -> Callable[[Any], Any]:
    return lambda qw: prepare(qw, "cuda")


# (name, supports(meta), prepare(qw) -> state on the GPU, run(state, x) -> y) for the kernel table
ENTRIES: list[tuple[str, Callable[[dict[str, Any]], bool], Callable[[Any], Any], Callable[[Any, Any], Any]]] = [
    ("triton_uniform", supports_uniform, _on_cuda(_lazy("uniform", "prepare")), _lazy("uniform", "run")),
    ("triton_table", supports_table, _on_cuda(_lazy("column_tables", "prepare")), _lazy("column_tables", "run")),
    ("triton_binary", supports_binary, _on_cuda(_lazy("uniform", "prepare_binary")), _lazy("uniform", "run")),
    ("triton_additive", supports_additive, _on_cuda(_lazy("additive", "prepare")), _lazy("additive", "run")),
]
