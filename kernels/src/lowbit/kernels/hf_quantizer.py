"""``AutoModelForCausalLM.from_pretrained(DIR)`` on a lowbit checkpoint, through transformers' own
quantizer registry (transformers 5: ``register_quantization_config`` / ``register_quantizer``).

A lowbit checkpoint's ``config.json`` carries ``quantization_config = {"quant_method": "lowbit", ...}``
(:mod:`lowbit.core.checkpoint`). With :class:`LowbitConfig` and :class:`LowbitHfQuantizer` registered
under ``"lowbit"``, ``from_pretrained`` builds the model on the meta device, and before any weight is
read the quantizer puts a :class:`~lowbit.kernels.quant_linear.QuantLinear` in place of every linear
named in ``quantization_config["layers"]``; its buffers are empty meta tensors of the shapes and
dtypes the safetensors headers give (read from the headers only, not the data). transformers then
loads every tensor under its own name (``<linear>.<storage name>``, e.g. ``...q_proj.codes``) at its
stored dtype (a buffer's dtype is kept: fp16 scales stay fp16, integer codes stay integers), so the
model holds exactly what :func:`lowbit.kernels.load_quantized` builds. After loading, every layer is
decoded once (:class:`~lowbit.core.checkpoint.CheckpointError` on a missing or inconsistent tensor).

What this path does not do that ``load_quantized`` does: check each shard's sha256 against the index
(transformers reads the shards itself; sizes and tensors are checked by safetensors and the decode).

Registration (:func:`register`) imports ``transformers``, so ``import lowbit.kernels`` does not do it
eagerly: it registers at once when ``transformers`` is already imported, and otherwise as soon as
``transformers`` is imported (a one-shot import hook), so that ``import lowbit.kernels`` followed by
``AutoModelForCausalLM.from_pretrained(DIR)`` works in either order.
"""

from __future__ import annotations

import functools
import json
import struct
from pathlib import Path
from typing import Any

import torch

from lowbit.core.checkpoint import FORMAT_VERSION, INDEX, QUANT_METHOD, CheckpointError

# safetensors dtype names -> torch dtypes (the ones a lowbit checkpoint writes, and their neighbours)
_DTYPES = {"U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "I32": torch.int32, "I64": torch.int64,
           "F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64,
           "BOOL": torch.bool}


def safetensors_specs(files: list[str]) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """``{tensor name: (shape, dtype)}`` of safetensors ``files``, from their headers alone.

    A safetensors file starts with an 8-byte little-endian header length and a JSON header mapping
    each name to its ``dtype``, ``shape`` and ``data_offsets``.
    """
    out: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
    for f in files:
        try:
            with open(f, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(n))
        except (OSError, struct.error, ValueError) as e:
            raise CheckpointError(f"{f} is not a readable safetensors file: {e}") from None
        for name, info in header.items():
            if name == "__metadata__":
                continue
            if info["dtype"] not in _DTYPES:
                raise CheckpointError(f"{f}: tensor {name} has unsupported dtype {info['dtype']}")
            out[name] = (tuple(info["shape"]), _DTYPES[info["dtype"]])
    return out


@functools.cache
def register() -> None:
    """Register ``"lowbit"`` with transformers' quantizer registry (once; imports transformers)."""
    from transformers.quantizers.auto import (
        AUTO_QUANTIZATION_CONFIG_MAPPING,
        AUTO_QUANTIZER_MAPPING,
        register_quantization_config,
        register_quantizer,
    )
    from transformers.quantizers.base import HfQuantizer
    from transformers.utils.quantization_config import QuantizationConfigMixin

    class LowbitConfig(QuantizationConfigMixin):
        """``quantization_config`` of a lowbit checkpoint: format version, the storage meta of every
        quantized linear (``layers``), and what the writer recorded (recipe, bit report), kept as is.

        ``kernel``: force one kernel of :data:`lowbit.kernels.KERNELS` for every QuantLinear (None:
        chosen per call). Pass it as ``from_pretrained(DIR, quantization_config={"kernel": ...})``.
        """

        def __init__(self, format_version: int = FORMAT_VERSION, layers: dict[str, Any] | None = None,
                     kernel: str | None = None, **kwargs: Any) -> None:
            self.quant_method = QUANT_METHOD
            self.format_version = format_version
            self.layers = layers or {}
            self.kernel = kernel
            for k, v in kwargs.items():
                if k != "quant_method":
                    setattr(self, k, v)
            self.post_init()

        def post_init(self) -> None:
            if self.format_version != FORMAT_VERSION:
                raise CheckpointError(f"unknown lowbit format version {self.format_version!r}; this version of "
                                      f"lowbit reads version {FORMAT_VERSION}")

    class LowbitHfQuantizer(HfQuantizer):
        """Loads pre-quantized lowbit checkpoints (module docstring); quantizing on load is not offered:
        lowbit's methods need calibration (``recipes/``)."""

        requires_calibration = True
        quantization_config: LowbitConfig

        def validate_environment(self, *args: Any, **kwargs: Any) -> None:
            if not self.pre_quantized:
                raise ValueError("lowbit quantizes with its recipes (calibration needed); from_pretrained only "
                                 "loads lowbit checkpoints")

        def _process_model_before_weight_loading(self, model: Any, checkpoint_files: list[str] | None = None,
                                                 **kwargs: Any) -> None:
            from .quant_linear import QuantLinear, replace_linears

            if not checkpoint_files:  # transformers versions that do not pass them: the config's directory
                root = Path(getattr(model.config, "name_or_path", "") or ".")
                if not (root / INDEX).is_file():
                    raise CheckpointError("a lowbit checkpoint loads from its safetensors files; none were given")
                files = json.loads((root / INDEX).read_text())["metadata"]["files"]
                checkpoint_files = [str(root / f) for f in files]
            specs = safetensors_specs(checkpoint_files)
            index = Path(checkpoint_files[0]).parent / INDEX
            if index.is_file():  # every tensor the index lists must be in the shards
                missing = sorted(set(json.loads(index.read_text())["weight_map"]) - set(specs))
                if missing:
                    raise CheckpointError(f"missing tensor(s) {missing[:5]} listed in {index}")
            layers = {}
            for name, meta in self.quantization_config.layers.items():
                prefix = f"{name}."
                tensors = {k[len(prefix):]: torch.empty(shape, dtype=dtype, device="meta")
                           for k, (shape, dtype) in specs.items()
                           if k.startswith(prefix) and "." not in k[len(prefix):] and k != f"{name}.bias"}
                if not tensors:
                    raise CheckpointError(f"layer {name}: no stored tensors in {Path(checkpoint_files[0]).parent}")
                bias = specs.get(f"{name}.bias")
                b = torch.empty(bias[0], dtype=bias[1], device="meta") if bias is not None else None
                layers[name] = QuantLinear(meta, tensors, b, self.quantization_config.kernel)
            replace_linears(model, layers)

        def _process_model_after_weight_loading(self, model: Any, **kwargs: Any) -> None:
            from lowbit.core.storage import StorageError

            from .quant_linear import QuantLinear

            for name, module in model.named_modules():
                if isinstance(module, QuantLinear):
                    if any(t.is_meta for t in module.packed().values()):
                        raise CheckpointError(f"layer {name}: tensors missing from the checkpoint")
                    try:
                        module.qweight()
                    except (StorageError, ValueError) as e:
                        raise CheckpointError(f"layer {name}: {e}") from None
            model.eval()

        def is_serializable(self, *args: Any, **kwargs: Any) -> bool:
            return False  # lowbit checkpoints are written by lowbit.core.checkpoint, not save_pretrained

        @property
        def is_trainable(self) -> bool:
            return False

    if QUANT_METHOD not in AUTO_QUANTIZATION_CONFIG_MAPPING:
        register_quantization_config(QUANT_METHOD)(LowbitConfig)
    if QUANT_METHOD not in AUTO_QUANTIZER_MAPPING:
        register_quantizer(QUANT_METHOD)(LowbitHfQuantizer)


def register_when_imported() -> None:
    """:func:`register` now if ``transformers`` is imported, else right after it is (import hook)."""
    import importlib.abc
    import importlib.util
    import sys

    if "transformers" in sys.modules:
        register()
        return
    if importlib.util.find_spec("transformers") is None:
        return

    class _AfterImport(importlib.abc.MetaPathFinder):
        """Finds nothing itself: on ``import transformers`` it lets the other finders find it, wraps the
        loader so that :func:`register` runs once the package is executed, and removes itself."""

        def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
            if name != "transformers":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None:
                return spec
            exec_module = spec.loader.exec_module

            def exec_and_register(module: Any) -> None:
                exec_module(module)
                try:
                    register()
                except Exception as e:  # never break importing transformers itself
                    import logging

                    logging.getLogger(__name__).warning("lowbit quantizer not registered with transformers: %s", e)

            spec.loader.exec_module = exec_and_register  # type: ignore[method-assign]
            return spec

    if not any(type(f).__name__ == "_AfterImport" for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())
