"""GPU batch-1 greedy decoding of SmolLM2-135M, eager and with CUDA graphs: tokens per second for fp16 and
for each packed format through ``QuantLinear`` and the kernel table (the Triton kernels on CUDA), in one run.

    python benchmarks/gpu_decode.py --json gpu_decode.json [--model DIR] [--tokens 128] [--only FMT,FMT]

Model: without ``--model``, SmolLM2-135M's architecture (its Llama config: 30 blocks, hidden 576, MLP 1536,
9 heads, 3 KV heads, vocabulary 49,152, tied embeddings) with random weights, so the GPU machine needs no
checkpoint. Every linear of the decoder blocks (q, k, v, o, gate, up, down; not the tied LM head) is
replaced by a ``QuantLinear`` of a random weight of its shape in the format
(``lowbit.kernels.triton.random_weights``: speed does not depend on the values, so the text is
meaningless). Uniform and binary use groups of 64 (576 is not a multiple of 128).

Decoding, the same for every format and fp16: transformers' ``StaticCache`` (K/V tensors of fixed size,
written in place at the cache's own on-device length counter, so every step has the same shapes and
addresses); the 32-token prompt prefilled eagerly; one step (:func:`step`) = the model on a static
(1, 1) ``ids`` at a static (1, 1) ``pos``, the argmax of its logits copied into ``ids``, ``pos += 1``.
(Transformers 5.x takes no ``cache_position``: the cache writes at its own counter, ``pos`` feeds the
rotary embedding.)

- eager: ``--warmup`` steps (they also run each Triton kernel's one-time tuning), then ``--tokens`` timed
  steps, each launched from Python: Python + transformers + one launch per linear, which at 135M
  parameters bounds the figure rather than the weight bytes.
- graphed: the cache reset and the prompt prefilled again, ``--warmup`` eager steps on a side stream,
  ONE step captured in a ``torch.cuda.CUDAGraph`` (``pos += 1`` and the cache's counter advance inside
  it), then ``--tokens`` timed replays. ``graph_matches_eager``: the graphed tokens equal the eager ones
  (same kernels from the same state: expected true).

Tokens/s is tokens over the wall time between two synchronizations; each speedup is against fp16 in the
same mode. A format whose capture fails keeps its eager figure and the exception text (``graph_error``);
one that fails outright gets ``error``; the run goes on, and the JSON is rewritten after every format.
``--device cpu`` runs the eager path only, in float32 (a smoke test; ``tests/test_gpu_decode.py`` checks
the static-cache tokens against ``generate``). The per-layer kernel figures are in
``benchmarks/gpu_kernels.py``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lowbit.core.formats import QuantizedWeight
from lowbit.core.hf import block_linears, decoder_blocks, load_model
from lowbit.kernels import quantize_model_layers, select
from lowbit.kernels.triton import random_weights as rw

SMOLLM2_135M: dict[str, Any] = dict(
    vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
    num_key_value_heads=3, max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5,
    tie_word_embeddings=True)
PROMPT = 32

# name -> random weight of the format: (d_out, d_in, seed, device)
FORMATS: dict[str, Callable[[int, int, int, str], QuantizedWeight]] = {
    "uniform4 g64": lambda o, i, s, d: rw.random_uniform(o, i, 4, 64, s, d),
    "uniform3 g64": lambda o, i, s, d: rw.random_uniform(o, i, 3, 64, s, d),
    "uniform2 g64": lambda o, i, s, d: rw.random_uniform(o, i, 2, 64, s, d),
    "table4": lambda o, i, s, d: rw.random_table(o, i, 4, s, d),
    "binary2 g64": lambda o, i, s, d: rw.random_binary(o, i, 2, 64, s, d),
    "aqlm 2x8": lambda o, i, s, d: rw.random_additive(o, i, 2, 8, s, d),
    "aqlm 1x16": lambda o, i, s, d: rw.random_additive(o, i, 1, 16, s, d),
}


@dataclass
class Decoder:
    """Batch-1 greedy decoding state with fixed addresses (what a CUDA graph of :func:`step` reads and writes)."""

    model: nn.Module
    cache: Any  # transformers.StaticCache
    ids: Tensor  # (1, 1) long: the token fed to the next step
    pos: Tensor  # (1, 1) long: its position
    tokens: Tensor  # (max_len + 1,) long: the prompt, then each generated token at its position


def decoder(model: nn.Module, max_len: int, device: torch.device) -> Decoder:
    """A decoder of ``model`` with a static cache of ``max_len`` positions (allocated at the first prefill)."""
    from transformers import StaticCache

    z = lambda *shape: torch.zeros(*shape, dtype=torch.long, device=device)
    return Decoder(model, StaticCache(config=model.config, max_cache_len=max_len), z(1, 1), z(1, 1), z(max_len + 1))


@torch.no_grad()
def prefill(d: Decoder, prompt: Tensor) -> None:
    """Reset the cache and run ``prompt`` (1, T) eagerly: ``ids`` is then the first generated token, ``pos`` = T."""
    n = prompt.shape[1]
    d.cache.reset()
    logits = d.model(input_ids=prompt, past_key_values=d.cache, use_cache=True).logits
    d.ids.copy_(logits[:, -1:].argmax(-1))
    d.pos.fill_(n)
    d.tokens.zero_()
    d.tokens[:n].copy_(prompt[0])
    d.tokens[n : n + 1].copy_(d.ids.view(1))


@torch.no_grad()
def step(d: Decoder) -> None:
    """One greedy token, in place and without reading any value on the host (so it can be graph-captured)."""
    logits = d.model(input_ids=d.ids, position_ids=d.pos, past_key_values=d.cache, use_cache=True).logits
    d.ids.copy_(logits[:, -1:].argmax(-1))
    d.pos.add_(1)
    d.tokens.index_copy_(0, d.pos.view(1), d.ids.view(1))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def eager_tokens_per_second(d: Decoder, prompt: Tensor, warmup: int, tokens: int) -> float:
    """Prefill, ``warmup`` steps, then ``tokens`` timed steps launched from Python."""
    prefill(d, prompt)
    for _ in range(warmup):
        step(d)
    _sync(prompt.device)
    t = time.perf_counter()
    for _ in range(tokens):
        step(d)
    _sync(prompt.device)
    return tokens / (time.perf_counter() - t)


def graphed_tokens_per_second(d: Decoder, prompt: Tensor, warmup: int, tokens: int) -> float:
    """Prefill, ``warmup`` eager steps on a side stream, one step captured in a CUDA graph, ``tokens`` timed
    replays (the positions advance inside the graph)."""
    prefill(d, prompt)
    side = torch.cuda.Stream(prompt.device)
    side.wait_stream(torch.cuda.current_stream(prompt.device))
    with torch.cuda.stream(side):
        for _ in range(warmup):
            step(d)
    torch.cuda.current_stream(prompt.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step(d)
    _sync(prompt.device)
    t = time.perf_counter()
    for _ in range(tokens):
        graph.replay()
    _sync(prompt.device)
    return tokens / (time.perf_counter() - t)


def smollm2_random() -> nn.Module:
    """SmolLM2-135M's architecture (``SMOLLM2_135M``) with random weights (no checkpoint needed)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M))


def random_layers(model: nn.Module, make: Callable[[int, int, int, str], QuantizedWeight],
                  device: str) -> dict[str, QuantizedWeight]:
    """A random weight of the format for every linear of every decoder block, by model-level name."""
    prefix = next(n for n, m in model.named_modules() if m is decoder_blocks(model))
    out: dict[str, QuantizedWeight] = {}
    for b, block in enumerate(decoder_blocks(model)):
        for name, lin in block_linears(block).items():
            out[f"{prefix}.{b}.{name}"] = make(lin.out_features, lin.in_features, 1000 * b + len(out), device)
    return out


def run_format(fmt: str, model: nn.Module, prompt: Tensor, warmup: int, tokens: int) -> dict[str, Any]:
    """One row: ``model`` (already on the device) with every block linear in ``fmt`` (or as is for fp16)."""
    device = prompt.device
    kernel = "torch " + str(next(model.parameters()).dtype).removeprefix("torch.")
    if fmt != "fp16":
        qws = random_layers(model, FORMATS[fmt], device.type)
        quantize_model_layers(model, qws)
        kernel = select(model.get_submodule(next(iter(qws))).meta, device.type, 1).name
    d = decoder(model, PROMPT + warmup + tokens + 1, device)
    row: dict[str, Any] = {"format": fmt, "kernel": kernel,
                           "eager_tokens_per_s": eager_tokens_per_second(d, prompt, warmup, tokens),
                           "graph_tokens_per_s": None, "graph_error": None, "graph_matches_eager": None}
    if device.type != "cuda":
        row["graph_error"] = "CUDA graphs need a CUDA device"
        return row
    eager = d.tokens.clone()
    try:
        row["graph_tokens_per_s"] = graphed_tokens_per_second(d, prompt, warmup, tokens)
        row["graph_matches_eager"] = bool(torch.equal(d.tokens, eager))
    except Exception as e:  # keep the eager figure and say why the capture failed
        row["graph_error"] = f"{type(e).__name__}: {e}"[:2000]
        try:
            _sync(device)
        except Exception:
            pass
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="Hugging Face checkpoint directory (default: SmolLM2-135M's "
                                                 "architecture with random weights)")
    p.add_argument("--tokens", type=int, default=128, help="timed tokens per format and mode")
    p.add_argument("--warmup", type=int, default=8, help="eager steps before timing (and before the capture)")
    p.add_argument("--only", default=None, help="comma-separated format names (fp16 always runs first)")
    p.add_argument("--device", default="cuda", help="cuda (default), or cpu: eager only, float32 (smoke test)")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu_decode.py needs a CUDA GPU (or --device cpu for a smoke test)")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    prompt = torch.randint(0, 1000, (1, PROMPT), generator=torch.Generator().manual_seed(0)).to(device)
    out: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "model": a.model or "SmolLM2-135M architecture, random weights",
        "prompt": PROMPT, "warmup": a.warmup, "tokens": a.tokens, "cuda_graphs": device.type == "cuda", "rows": []}
    rows: list[dict[str, Any]] = out["rows"]
    for fmt in ["fp16", *(a.only.split(",") if a.only else FORMATS)]:
        model = load_model(a.model)[0] if a.model else smollm2_random()
        try:
            row = run_format(fmt, model.to(device=device, dtype=dtype).eval(), prompt, a.warmup, a.tokens)
        except Exception as e:  # e.g. a kernel that does not compile: say so, go on with the next format
            row = {"format": fmt, "kernel": None, "eager_tokens_per_s": None, "graph_tokens_per_s": None,
                   "graph_error": None, "graph_matches_eager": None, "error": f"{type(e).__name__}: {e}"[:2000]}
        base = rows[0] if rows else row
        for mode in ("eager", "graph"):
            tps, ref = row[f"{mode}_tokens_per_s"], base[f"{mode}_tokens_per_s"]
            row[f"{mode}_speedup_vs_fp16"] = tps / ref if tps and ref else None
        rows.append(row)
        fig = lambda v: f"{v:8.1f}" if v else "       -"
        note = row.get("error") or row["graph_error"]
        print(f"{fmt:14s} {row['kernel'] or '-':18s} eager {fig(row['eager_tokens_per_s'])}  graph "
              f"{fig(row['graph_tokens_per_s'])} tokens/s  match={row['graph_matches_eager']}"
              + (f"  ({note})" if note else ""), flush=True)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if a.json:
            with open(a.json, "w") as f:
                json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
