"""Activation quantization: fake-quantized inputs of linear layers (weight-activation settings such as
W8A8 and W4A8 in LRQ, arXiv 2407.11534, and SmoothQuant, arXiv 2211.10438).

A b-bit symmetric grid with step ``Delta`` and ``qmax = 2^(b-1) - 1``:

    x_hat = Delta * clamp(round(x / Delta), -qmax - 1, qmax),

with ``Delta = amax / qmax`` where ``amax`` is

- ``"token"`` (dynamic): ``max_j |x_ij|`` of each token (row of the last dimension), computed on the fly;
- ``"tensor"`` (static): one number per linear, the largest ``|x|`` seen on the calibration set
  (:func:`calibrate_absmax`), fixed afterwards.

The rounding passes gradients straight through, so earlier layers can still be trained while the
activations are quantized (block reconstruction). The hooks stay on the model for evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

GRANULARITIES = ("tensor", "token")


def check_act_bits(bits: int, granularity: str) -> None:
    """Raise ``ValueError`` unless ``bits`` is in 2..16 and ``granularity`` is ``tensor`` or ``token``."""
    if not isinstance(bits, int) or not 2 <= bits <= 16:
        raise ValueError(f"activation bits must be an integer in 2..16, got {bits!r}")
    if granularity not in GRANULARITIES:
        raise ValueError(f"activation granularity must be one of {GRANULARITIES}, got {granularity!r}")


def fake_quantize_symmetric(x: Tensor, amax: Tensor, bits: int) -> Tensor:
    """``Delta * clamp(round(x / Delta), -qmax - 1, qmax)`` with ``Delta = amax / qmax``; ``amax``
    broadcasts to ``x`` (a scalar, or ``(..., 1)`` per token). Straight-through gradient; ``amax = 0``
    gives zeros."""
    qmax = (1 << (bits - 1)) - 1
    delta = (amax.float() / qmax).clamp(min=1e-12)
    q = torch.clamp(torch.round(x.float() / delta), -qmax - 1, qmax) * delta
    return x + (q.to(x.dtype) - x).detach()


def per_token_absmax(x: Tensor) -> Tensor:
    """``(..., 1)``: the largest ``|x|`` of each token (over the last dimension)."""
    return x.detach().abs().amax(dim=-1, keepdim=True)


@torch.no_grad()
def calibrate_absmax(modules: Mapping[str, nn.Module], forward: Callable[[], Any]) -> dict[str, Tensor]:
    """The largest ``|input|`` of each module over everything ``forward()`` runs (scalar tensors)."""
    amax: dict[str, Tensor] = {}

    def hook(name: str) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        def pre(_: nn.Module, args: tuple[Any, ...]) -> None:
            m = args[0].detach().abs().amax().float()
            amax[name] = torch.maximum(amax[name], m) if name in amax else m
        return pre

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in modules.items()]
    try:
        forward()
    finally:
        for h in handles:
            h.remove()
    return amax


def install_act_quant(linears: Mapping[str, nn.Module], bits: int, granularity: str,
                      static_amax: Mapping[str, Tensor] | None = None) -> dict[str, RemovableHandle]:
    """Fake-quantize the input of every module in ``linears`` by a forward pre-hook.

    ``granularity="tensor"`` needs ``static_amax`` (from :func:`calibrate_absmax`) for every module.
    Returns the hook handles by name (:func:`remove_act_quant`).
    """
    check_act_bits(bits, granularity)
    if granularity == "tensor":
        missing = [n for n in linears if static_amax is None or n not in static_amax]
        if missing:
            raise ValueError(f"per-tensor activation quantization needs calibrated scales; missing for {missing}")

    def hook(name: str) -> Callable[[nn.Module, tuple[Any, ...]], tuple[Any, ...]]:
        def pre(_: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
            x = args[0]
            amax = per_token_absmax(x) if static_amax is None or granularity == "token" else static_amax[name]
            return (fake_quantize_symmetric(x, amax.to(x.device), bits), *args[1:])
        return pre

    return {n: m.register_forward_pre_hook(hook(n)) for n, m in linears.items()}


def remove_act_quant(handles: Mapping[str, RemovableHandle]) -> None:
    """Undo :func:`install_act_quant`."""
    for h in handles.values():
        h.remove()
