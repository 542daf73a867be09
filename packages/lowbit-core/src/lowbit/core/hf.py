"""Hugging Face causal LMs: loading, walking decoder blocks, block-by-block calibration capture.

``transformers`` is imported lazily, only by :func:`load_model`. Walking works on any module tree:
the decoder blocks are ``model.model.layers`` for the Llama family (SmolLM2 included), or the
``nn.ModuleList`` that a user-supplied ``blocks`` function returns.

Capture follows the "catcher" pattern: the first block is replaced by a module that records the
hidden states and every keyword argument it receives (rotary ``position_embeddings``,
``position_ids``, ``attention_mask``, cache flags) and stops the forward pass. Blocks are then
replayed one at a time on the accelerator with those arguments.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .calib import LayerStats, matmul_precision
from .models import resolve_model

log = logging.getLogger(__name__)

LinearFilter = Callable[[str, nn.Linear], bool]


def load_model(model: str | Path | None, dtype: torch.dtype = torch.float32) -> tuple[nn.Module, Any]:
    """Load a causal LM and its tokenizer from a checkpoint directory (None: the default model)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(model)
    lm = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    lm.eval()
    lm.config.use_cache = False
    tok = AutoTokenizer.from_pretrained(str(path))
    return lm, tok


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a Llama-family causal LM (``model.model.layers``).

    Raises:
        ValueError: the model has no such list; pass ``blocks=`` to :func:`run_sequential`.
    """
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if isinstance(layers, nn.ModuleList):
        return layers
    raise ValueError(f"cannot find decoder blocks in {type(model).__name__}: "
                     "pass a function that returns them (blocks=...)")


def block_linears(block: nn.Module, keep: LinearFilter | None = None) -> dict[str, nn.Linear]:
    """The ``nn.Linear`` modules of a block by qualified name, filtered by ``keep(name, module)``."""
    return {n: m for n, m in block.named_modules()
            if isinstance(m, nn.Linear) and (keep is None or keep(n, m))}


class _Stop(Exception):
    pass


class _Catcher(nn.Module):
    def __init__(self, store: BlockInputs, device: torch.device) -> None:
        super().__init__()
        self.store = store
        self.device = device

    def forward(self, hidden_states: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if args:
            raise ValueError("the first decoder block was called with positional arguments beyond "
                             "hidden_states; capture cannot replay them")
        self.store.hidden.append(hidden_states.detach().to(self.store.device))
        self.store.kwargs.append(kwargs)
        raise _Stop


@dataclass
class BlockInputs:
    """Inputs of one decoder block, per calibration batch, and the keyword arguments to replay."""

    device: torch.device
    hidden: list[Tensor] = field(default_factory=list)
    kwargs: list[dict[str, Any]] = field(default_factory=list)

    def __iter__(self) -> Iterator[tuple[Tensor, dict[str, Any]]]:
        return iter(zip(self.hidden, self.kwargs, strict=True))


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, tuple):
        return tuple(_to(o, device) for o in obj)
    if isinstance(obj, list):
        return [_to(o, device) for o in obj]
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


@torch.no_grad()
def capture_block_inputs(model: nn.Module, ids: Tensor, device: torch.device | str, batch_size: int = 8,
                         blocks: nn.ModuleList | None = None) -> BlockInputs:
    """Run the model up to its first block and record that block's inputs.

    Only the modules outside the blocks (embeddings, rotary tables) go to ``device``; the blocks
    stay where they are.

    Args:
        ids: ``(n, T)`` token windows.
    """
    device = torch.device(device)
    blocks = decoder_blocks(model) if blocks is None else blocks
    if ids.ndim != 2 or ids.shape[0] == 0:
        raise ValueError(f"calibration ids must be a non-empty (n, T) tensor, got shape {tuple(ids.shape)}")
    store = BlockInputs(device)
    saved = list(blocks)
    home = next(model.parameters()).device
    try:
        for i in range(len(blocks)):
            blocks[i] = nn.Identity()
        model.to(device)
        blocks[0] = _Catcher(store, device)
        for start in range(0, ids.shape[0], batch_size):
            try:
                model(ids[start: start + batch_size].to(device), use_cache=False)
            except _Stop:
                pass
    finally:
        for i in range(len(blocks)):
            blocks[i] = nn.Identity()
        model.to(home)
        for i, b in enumerate(saved):
            blocks[i] = b
    store.kwargs = [_to(k, device) for k in store.kwargs]
    return store


def _block_out(out: Any) -> Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


@torch.no_grad()
def forward_block(block: nn.Module, inputs: BlockInputs) -> BlockInputs:
    """The block's outputs for every captured batch (the next block's inputs)."""
    out = BlockInputs(inputs.device, kwargs=inputs.kwargs)
    for h, kw in inputs:
        out.hidden.append(_block_out(block(h, **kw)))
    return out


@torch.no_grad()
def collect_stats(block: nn.Module, linears: dict[str, nn.Linear], inputs: BlockInputs,
                  hessian_dtype: torch.dtype = torch.float32) -> tuple[dict[str, LayerStats], BlockInputs]:
    """Hessians and channel statistics of every linear's input, and the block's outputs.

    Linears that read the same input tensor in a forward pass (q/k/v, gate/up) share one
    :class:`LayerStats` object, so its Hessian is computed once.
    """
    stats: dict[str, LayerStats] = {}
    seen: dict[int, tuple[Tensor, LayerStats]] = {}  # the tensor is held so its id is not reused

    def hook(name: str) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        def pre(mod: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0]
            key = id(x)
            if key not in seen:
                s = stats.get(name) or LayerStats.empty(x.shape[-1], x.device, hessian_dtype)
                s.update(x)
                seen[key] = (x, s)
            stats[name] = seen[key][1]
        return pre

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in linears.items()]
    out = BlockInputs(inputs.device, kwargs=inputs.kwargs)
    try:
        for h, kw in inputs:
            seen.clear()
            out.hidden.append(_block_out(block(h, **kw)))
    finally:
        for hd in handles:
            hd.remove()
    return stats, out


@dataclass
class BlockContext:
    """What a block quantizer gets: the block (on the accelerator), its linears, their input
    statistics, the block's (already-quantized-model) inputs and its full-precision outputs."""

    index: int
    name: str
    block: nn.Module
    linears: dict[str, nn.Linear]
    stats: dict[str, LayerStats]
    inputs: BlockInputs
    fp_outputs: BlockInputs

    def shared_groups(self) -> list[list[str]]:
        """Names of linears grouped by shared input statistics (q/k/v together, gate/up together)."""
        groups: dict[int, list[str]] = {}
        for n in self.linears:
            groups.setdefault(id(self.stats[n]), []).append(n)
        return list(groups.values())


def run_sequential(model: nn.Module, ids: Tensor, quantize_block: Callable[[BlockContext], dict[str, Any]],
                   *, device: torch.device | str, batch_size: int = 8, keep: LinearFilter | None = None,
                   blocks: nn.ModuleList | None = None, hessian_dtype: torch.dtype = torch.float32,
                   tf32: bool = True,
                   progress: Callable[[Iterable[int]], Iterable[int]] | None = None) -> dict[str, Any]:
    """The sequential driver: capture, then for each block collect statistics, quantize, and
    recompute its outputs with the quantized block as the next block's inputs.

    ``quantize_block(ctx)`` must replace the weights of ``ctx.linears`` it quantized (typically
    with ``QuantizedWeight.dequantize()``) and return what it made by linear name; the driver
    returns everything keyed by the model-level name (``model.layers.3.self_attn.q_proj``).

    ``tf32``: the calibration forward passes of the blocks may use TF32 matmuls on GPUs that have
    them (GPTQ's reference runs them in fp16); Hessians are always summed in full precision, and
    quantizers run with the caller's setting.
    """
    device = torch.device(device)
    blocks = decoder_blocks(model) if blocks is None else blocks
    prefix = next((n for n, m in model.named_modules() if m is blocks), "layers")
    inputs = capture_block_inputs(model, ids, device, batch_size, blocks)
    precision = "high" if tf32 else torch.get_float32_matmul_precision()
    results: dict[str, Any] = {}
    indices: Iterable[int] = range(len(blocks))
    for i in (progress(indices) if progress else indices):
        block = blocks[i]
        home = next(block.parameters()).device
        block.to(device)
        linears = block_linears(block, keep)
        with matmul_precision(precision):
            stats, fp_out = collect_stats(block, linears, inputs, hessian_dtype)
        ctx = BlockContext(i, f"{prefix}.{i}", block, linears, stats, inputs, fp_out)
        made = quantize_block(ctx)
        for name, value in made.items():
            results[f"{prefix}.{i}.{name}"] = value
        del stats, ctx
        with matmul_precision(precision):
            inputs = forward_block(block, inputs)
        block.to(home)
        log.debug("block %d done", i)
    return results


@torch.no_grad()
def block_outputs_full(model: nn.Module, ids: Tensor, blocks: nn.ModuleList | None = None) -> list[Tensor]:
    """Each block's output for ``ids`` from one ordinary full-model forward (for replay checks)."""
    blocks = decoder_blocks(model) if blocks is None else blocks
    outs: list[Tensor] = []
    handles = [b.register_forward_hook(lambda m, a, o: outs.append(_block_out(o).detach()))
               for b in blocks]
    try:
        model(ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return outs
