"""GPU batch-1 decoding of SmolLM2-135M: tokens per second for fp16 and for each packed format through
``QuantLinear`` and the kernel table (the Triton kernels on CUDA), in one run.

    python benchmarks/gpu_decode.py --json gpu_decode.json [--model DIR] [--tokens 128]

Without ``--model`` the model is SmolLM2-135M's architecture (its Llama config: 30 blocks, hidden 576,
MLP 1536, 9 heads, 3 KV heads, vocabulary 49,152, tied embeddings) with random weights, so the
benchmark needs no checkpoint on the GPU machine; every linear is replaced by a random packed weight
anyway.

Every linear of the decoder blocks (q, k, v, o, gate, up, down; not the tied LM head) is replaced by a
``QuantLinear`` of a random weight of its shape in the format (``lowbit.kernels.triton.random_weights``:
speed does not depend on the values, so the text generated is meaningless). Uniform and binary use
groups of 64 (SmolLM2's 576 is not a multiple of 128). Decoding is greedy with the model's KV cache,
one token a step after a 32-token prompt, timed over ``--tokens`` steps after a warm-up that also runs
each kernel's one-time tuning. No CUDA graphs: the step is Python + transformers + one launch per
linear, so at 135M parameters the figure is bounded by launch overhead rather than by weight bytes
(the per-layer kernel figures are in ``benchmarks/gpu_kernels.py``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch
from torch import nn

from lowbit.core.formats import QuantizedWeight
from lowbit.core.hf import block_linears, decoder_blocks, load_model
from lowbit.kernels import quantize_model_layers
from lowbit.kernels.triton import random_weights as rw

SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                    rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True)

FORMATS: dict[str, Callable[[int, int, int], QuantizedWeight]] = {
    "uniform4 g64": lambda o, i, s: rw.random_uniform(o, i, 4, 64, s, "cuda"),
    "uniform3 g64": lambda o, i, s: rw.random_uniform(o, i, 3, 64, s, "cuda"),
    "uniform2 g64": lambda o, i, s: rw.random_uniform(o, i, 2, 64, s, "cuda"),
    "table4": lambda o, i, s: rw.random_table(o, i, 4, s, "cuda"),
    "binary2 g64": lambda o, i, s: rw.random_binary(o, i, 2, 64, s, "cuda"),
    "aqlm 2x8": lambda o, i, s: rw.random_additive(o, i, 2, 8, s, "cuda"),
    "aqlm 1x16": lambda o, i, s: rw.random_additive(o, i, 1, 16, s, "cuda"),
}


@torch.no_grad()
def decode_tokens_per_second(model: nn.Module, prompt: torch.Tensor, tokens: int) -> float:
    """Greedy decoding of ``tokens`` new tokens after ``prompt`` (1, T), KV cache on; tokens / second."""
    out = model(prompt, use_cache=True)
    cache, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(tokens):
        out = model(nxt, past_key_values=cache, use_cache=True)
        cache, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
    torch.cuda.synchronize()
    return tokens / (time.perf_counter() - t)


def smollm2_random() -> nn.Module:
    """SmolLM2-135M's architecture with random weights (no checkpoint needed)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M))


def random_layers(model: nn.Module, make: Callable[[int, int, int], QuantizedWeight]) -> dict[str, QuantizedWeight]:
    """A random weight of the format for every linear of every decoder block, by model-level name."""
    prefix = next(n for n, m in model.named_modules() if m is decoder_blocks(model))
    out = {}
    for b, block in enumerate(decoder_blocks(model)):
        for name, lin in block_linears(block).items():
            out[f"{prefix}.{b}.{name}"] = make(lin.out_features, lin.in_features, 1000 * b + len(out))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="Hugging Face checkpoint directory (default: SmolLM2-135M's "
                                                 "architecture with random weights)")
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--only", default=None, help="comma-separated format names")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu_decode.py needs a CUDA GPU")
    from lowbit.kernels import select

    prompt = torch.randint(0, 1000, (1, 32), device="cuda")
    rows = []
    for fmt in ["fp16", *(a.only.split(",") if a.only else FORMATS)]:
        model = load_model(a.model)[0] if a.model else smollm2_random()
        model = model.half().cuda().eval()
        kernel = "torch fp16"
        if fmt != "fp16":
            qws = random_layers(model, FORMATS[fmt])
            name, qw = next(iter(qws.items()))
            quantize_model_layers(model, qws)
            kernel = select(model.get_submodule(name).meta, "cuda", 1).name
        decode_tokens_per_second(model, prompt, 8)  # warm-up: compilation and tuning
        tps = decode_tokens_per_second(model, prompt, a.tokens)
        rows.append({"format": fmt, "kernel": kernel, "tokens_per_s": tps})
        print(f"{fmt:14s} {kernel:18s} {tps:8.1f} tokens/s", flush=True)
        del model
        torch.cuda.empty_cache()
    base = rows[0]["tokens_per_s"]
    for r in rows:
        r["speedup_vs_fp16"] = r["tokens_per_s"] / base
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"gpu": torch.cuda.get_device_name(), "tokens": a.tokens, "cuda_graphs": False, "rows": rows},
                      f, indent=2)


if __name__ == "__main__":
    main()
