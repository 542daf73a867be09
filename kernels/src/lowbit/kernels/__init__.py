"""lowbit.kernels: packed matmul (torch reference, compiled CPU GEMV), the kernel table, QuantLinear,
and loading lowbit checkpoints into ``transformers`` (``load_quantized``, imported lazily; and
``AutoModelForCausalLM.from_pretrained(DIR)`` directly: the ``"lowbit"`` quantizer is registered with
transformers once it is imported, :mod:`lowbit.kernels.hf_quantizer`)."""

from __future__ import annotations

from typing import Any

from .dispatch import KERNELS, REFERENCE, Kernel, select
from .hf_quantizer import register_when_imported
from .quant_linear import QuantLinear, quantize_model_layers, replace_linears

__version__ = "0.1.0"

register_when_imported()

__all__ = ["KERNELS", "REFERENCE", "Kernel", "QuantLinear", "load_quantized", "quantize_model_layers",
           "replace_linears", "select"]


def load_quantized(*args: Any, **kwargs: Any) -> Any:
    """See :func:`lowbit.kernels.loading.load_quantized` (imports ``transformers`` when called)."""
    from .loading import load_quantized as _load

    return _load(*args, **kwargs)
