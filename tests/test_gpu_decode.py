"""benchmarks/gpu_decode.py on the CPU: its static-cache decoding (the step a CUDA graph captures on the GPU)
generates the same greedy tokens as ``generate`` with the default dynamic cache, reads no tensor value on
the host, and the whole benchmark runs (eager only) on a tiny Llama."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode

from lowbit.core.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, rope_theta=10000.0, rms_norm_eps=1e-5,
            tie_word_embeddings=True)


@pytest.fixture(scope="module")
def gd() -> ModuleType:
    return load_recipe(ROOT / "benchmarks" / "gpu_decode.py")


def tiny_model(gd: ModuleType, fmt: str) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    from lowbit.kernels import quantize_model_layers

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**TINY)).eval()
    if fmt != "fp16":
        quantize_model_layers(model, gd.random_layers(model, gd.FORMATS[fmt], "cpu"))
    return model


class HostReads(TorchFunctionMode):
    """Records every tensor method that hands a value to Python (a device sync: not capturable)."""

    READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__int__,
             torch.Tensor.__float__, torch.Tensor.__index__, torch.Tensor.numpy}

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in self.READS:
            self.seen.append(func.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("fmt", ["fp16", "uniform4 g64"])
def test_static_cache_steps_match_generate(gd: ModuleType, fmt: str) -> None:
    model = tiny_model(gd, fmt)
    prompt = torch.randint(0, TINY["vocab_size"], (1, 8), generator=torch.Generator().manual_seed(1))
    steps = 6
    with torch.no_grad():
        ref = model.generate(prompt, max_new_tokens=steps + 1, do_sample=False, eos_token_id=None, pad_token_id=0)
    d = gd.decoder(model, prompt.shape[1] + steps + 1, torch.device("cpu"))
    for _ in range(2):  # the second round reuses the cache tensors, as the graphed run does
        gd.prefill(d, prompt)
        for _ in range(steps):
            gd.step(d)
        assert int(d.pos) == prompt.shape[1] + steps
        assert torch.equal(d.tokens[: ref.shape[1]], ref[0])


def test_step_reads_nothing_on_the_host(gd: ModuleType) -> None:
    model = tiny_model(gd, "fp16")
    prompt = torch.arange(8).view(1, 8)
    d = gd.decoder(model, 16, torch.device("cpu"))
    gd.prefill(d, prompt)
    gd.step(d)
    with HostReads() as reads:
        gd.step(d)
    assert reads.seen == []


def test_benchmark_runs_on_cpu(gd: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(gd, "SMOLLM2_135M", TINY)
    out = tmp_path / "decode.json"
    gd.main(["--device", "cpu", "--tokens", "2", "--warmup", "1", "--only", "uniform4 g64", "--json", str(out)])
    res = json.loads(out.read_text())
    assert [r["format"] for r in res["rows"]] == ["fp16", "uniform4 g64"]
    assert res["cuda_graphs"] is False
    for r in res["rows"]:
        assert r["eager_tokens_per_s"] > 0 and r["eager_speedup_vs_fp16"] > 0
        assert r["graph_tokens_per_s"] is None and r["graph_error"]
