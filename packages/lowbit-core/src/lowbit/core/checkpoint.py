"""Quantized checkpoints: safetensors shards plus ``config.json`` with a versioned ``quantization_config``.

Layout of a checkpoint directory::

    config.json                     the model's config + quantization_config (below)
    layers-00000.safetensors ...    one shard per decoder block: <linear>.<storage name> tensors
                                    (:mod:`lowbit.core.storage`), written as each block is quantized
    rest.safetensors                every other parameter (embeddings, norms, head), tied ones once
    model.safetensors.index.json    weight_map (tensor -> shard) and each shard's size and sha256
    tokenizer files

``quantization_config = {"quant_method": "lowbit", "format_version": 1, "layers": {name: meta},
"recipe": {...}, "bit_report": {...}}`` where ``meta`` is the storage meta of each quantized linear
(its format, shape, widths, ...). The writer streams: each block's packed tensors go to disk when the
block is done, and nothing is held twice. It writes into a temporary sibling directory that is
renamed to the destination only at the end: a failure leaves no half-written checkpoint, and an
existing destination is refused unless ``overwrite``. Reading checks the version, every shard's size
and sha256, and that every tensor the config names is there (:class:`CheckpointError` otherwise).
``lowbit.kernels.load_quantized`` builds the runnable model from this.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from .formats import QuantizedWeight
from .models import sha256_file
from .storage import Tensors, encode

log = logging.getLogger(__name__)

QUANT_METHOD = "lowbit"
FORMAT_VERSION = 1
INDEX = "model.safetensors.index.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be written or read: existing destination, corrupt or missing data,
    unknown format version."""


def check_destination(dest: str | Path, overwrite: bool) -> Path:
    """``dest`` as a path; :class:`CheckpointError` if it exists and ``overwrite`` is false."""
    path = Path(dest)
    if path.exists() and not overwrite:
        raise CheckpointError(f"checkpoint directory {path} already exists (pass --overwrite to replace it)")
    return path


class CheckpointWriter:
    """Streams a quantized model to ``dest`` (see the module docstring); use ``add_block`` per block,
    then ``finish``; ``abort`` (or an exception inside ``with``) removes the temporary directory."""

    def __init__(self, dest: str | Path, overwrite: bool = False) -> None:
        self.dest = check_destination(dest, overwrite).resolve()
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.dest.parent / f".{self.dest.name}.partial-{os.getpid()}"
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir()
        self.layers: dict[str, dict[str, Any]] = {}
        self.weight_map: dict[str, str] = {}
        self.files: dict[str, dict[str, Any]] = {}

    def __enter__(self) -> CheckpointWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is not None:
            self.abort()

    def _write(self, name: str, tensors: Tensors, metadata: dict[str, str] | None = None) -> None:
        from safetensors.torch import save_file

        path = self.tmp / name
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
        self.files[name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
        self.weight_map.update(dict.fromkeys(tensors, name))

    def add_block(self, qweights: dict[str, QuantizedWeight]) -> None:
        """Pack one block's quantized linears (model-level names) into the next shard."""
        tensors: Tensors = {}
        for name, qw in qweights.items():
            meta, ts = encode(qw)
            self.layers[name] = meta
            tensors.update({f"{name}.{k}": v for k, v in ts.items()})
        self._write(f"layers-{len(self.files):05d}.safetensors", tensors, {"format": "pt"})

    def finish(self, model: nn.Module, tokenizer: Any = None, info: dict[str, Any] | None = None) -> Path:
        """Write the unquantized parameters, config, index and tokenizer; move into place."""
        skip = {f"{name}.weight" for name in self.layers}
        rest: Tensors = {}
        seen: dict[int, str] = {}
        tied: dict[str, str] = {}
        for k, v in model.state_dict().items():
            if k in skip:
                continue
            if v.data_ptr() in seen:  # tied parameters (lm_head = embeddings) stored once
                tied[k] = seen[v.data_ptr()]
                continue
            seen[v.data_ptr()] = k
            rest[k] = v.detach().cpu()
        self._write("rest.safetensors", rest, {"format": "pt"})
        qc = {"quant_method": QUANT_METHOD, "format_version": FORMAT_VERSION, "layers": self.layers,
              **(info or {})}
        hf_config: Any = getattr(model, "config", None)
        config = hf_config.to_dict() if hf_config is not None else {}
        config["quantization_config"] = qc
        (self.tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
        (self.tmp / INDEX).write_text(json.dumps({"metadata": {"files": self.files, "tied": tied},
                                                  "weight_map": self.weight_map}, indent=1))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(self.tmp))
        if self.dest.exists():
            old = self.dest.parent / f".{self.dest.name}.old-{os.getpid()}"
            self.dest.rename(old)
            self.tmp.rename(self.dest)
            shutil.rmtree(old)
        else:
            self.tmp.rename(self.dest)
        log.info("checkpoint written to %s", self.dest)
        return self.dest

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def read_config(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model config, quantization_config)`` of a checkpoint, the version checked."""
    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise CheckpointError(f"{path} is not a lowbit checkpoint: no config.json")
    try:
        config = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_file} is not valid JSON: {e}") from None
    qc = config.pop("quantization_config", None)
    if not isinstance(qc, dict) or qc.get("quant_method") != QUANT_METHOD:
        raise CheckpointError(f"{cfg_file} has no quantization_config with quant_method {QUANT_METHOD!r}")
    if qc.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"unknown lowbit format version {qc.get('format_version')!r} in {cfg_file}; "
                              f"this version of lowbit reads version {FORMAT_VERSION}")
    return config, qc


def read_tensors(path: str | Path, verify: bool = True) -> Tensors:
    """Every tensor of a checkpoint by name (tied ones under each name), each shard's size and sha256
    checked against the index."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    try:
        index = json.loads((path / INDEX).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path / INDEX} is missing or unreadable: {e}") from None
    out: Tensors = {}
    for name, info in index["metadata"]["files"].items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"missing file {f}")
        size = f.stat().st_size
        if size != info["bytes"]:
            raise CheckpointError(f"{f} is {size} bytes, expected {info['bytes']}: truncated or corrupted")
        if verify and sha256_file(f) != info["sha256"]:
            raise CheckpointError(f"{f} does not match its sha256 in {INDEX}: corrupted")
        try:
            out.update(load_file(str(f)))
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{f} is not a readable safetensors file: {e}") from None
    for alias, name in index["metadata"].get("tied", {}).items():
        if name in out:
            out[alias] = out[name]
    missing = sorted(set(index["weight_map"]) - set(out))
    if missing:
        raise CheckpointError(f"missing tensor(s) {missing[:5]} listed in {INDEX}")
    return out


def layer_tensors(tensors: Tensors, name: str) -> Tensors:
    """The storage tensors of linear ``name`` (prefix stripped)."""
    p = f"{name}."
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p) and "." not in k[len(p):]}


def dir_bytes(path: str | Path) -> dict[str, int]:
    """Bytes on disk by kind: ``layers`` (quantized shards), ``rest``, ``other`` (config, index, tokenizer)."""
    out = {"layers": 0, "rest": 0, "other": 0}
    for f in Path(path).iterdir():
        kind = "layers" if f.name.startswith("layers-") else "rest" if f.name == "rest.safetensors" else "other"
        out[kind] += f.stat().st_size
    return out
