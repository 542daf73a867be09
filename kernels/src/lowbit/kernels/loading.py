"""Loading a lowbit checkpoint (:mod:`lowbit.core.checkpoint`) into a runnable ``transformers`` model.

``load_quantized(DIR)`` checks the checkpoint (version, sizes, sha256, every tensor present), builds
the model from its config with ``transformers`` (imported here, lazily), replaces each quantized
linear by a :class:`~lowbit.kernels.quant_linear.QuantLinear` over the stored packed tensors, loads
the other parameters and re-ties shared ones, so that ``model.generate`` works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from lowbit.core.checkpoint import CheckpointError, layer_tensors, read_config, read_tensors
from lowbit.core.storage import StorageError, decode

from .quant_linear import QuantLinear, replace_linears


def load_quantized(path: str | Path, kernel: str | None = None, verify: bool = True,
                   tokenizer: bool = True) -> tuple[nn.Module, Any]:
    """``(model, tokenizer)`` from a lowbit checkpoint directory; :class:`CheckpointError` on bad input.

    Args:
        kernel: force one kernel (e.g. ``"reference"``) for every QuantLinear; None picks per call.
        verify: check every shard's sha256 (sizes are always checked).
        tokenizer: also load the tokenizer saved with the checkpoint (None when False).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    config, qc = read_config(path)
    tensors = read_tensors(path, verify)
    layers: dict[str, QuantLinear] = {}
    for name, meta in qc["layers"].items():
        ts = layer_tensors(tensors, name)
        try:
            decode(meta, ts)  # every tensor present and consistent before anything runs
        except StorageError as e:
            raise CheckpointError(f"layer {name}: {e}") from None
        layers[name] = QuantLinear(meta, ts, tensors.get(f"{name}.bias"), kernel)
    model_type = config.pop("model_type")
    cfg = AutoConfig.for_model(model_type, **config)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    replace_linears(model, layers)
    expected = {k for k in model.state_dict() if not any(k.startswith(f"{n}.") for n in layers)}
    rest = {k: tensors[k] for k in expected if k in tensors}
    missing = sorted(expected - set(rest))
    if missing:
        raise CheckpointError(f"missing tensor(s) {missing[:5]} in {path}")
    model.load_state_dict(rest, strict=False)
    model.tie_weights()
    model.eval()
    tok = AutoTokenizer.from_pretrained(str(path)) if tokenizer else None
    return model, tok
