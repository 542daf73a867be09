"""Block-by-block capture and replay on a tiny random Llama (needs transformers)."""

from __future__ import annotations

import pytest
import torch

from lowbit.core.hf import (
    BlockContext,
    block_linears,
    block_outputs_full,
    capture_block_inputs,
    decoder_blocks,
    forward_block,
    run_sequential,
)

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).eval()


def test_replay_reproduces_full_forward(tiny: torch.nn.Module) -> None:
    ids = torch.randint(0, 64, (5, 16), generator=torch.Generator().manual_seed(1))
    full = block_outputs_full(tiny, ids)
    inputs = capture_block_inputs(tiny, ids, "cpu", batch_size=2)
    assert [h.shape[0] for h in inputs.hidden] == [2, 2, 1]
    assert "position_embeddings" in inputs.kwargs[0]
    for block, ref in zip(decoder_blocks(tiny), full, strict=True):
        inputs = forward_block(block, inputs)
        assert torch.equal(torch.cat(inputs.hidden), ref)


def test_sequential_driver_groups_shared_inputs(tiny: torch.nn.Module) -> None:
    ids = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(2))
    seen: list[list[list[str]]] = []

    def quantize_block(ctx: BlockContext) -> dict[str, int]:
        seen.append(sorted(sorted(g) for g in ctx.shared_groups()))
        assert ctx.stats["self_attn.q_proj"] is ctx.stats["self_attn.k_proj"]
        assert ctx.stats["self_attn.q_proj"].n_tokens == 4 * 16
        x_norm = ctx.block.input_layernorm(torch.cat(ctx.inputs.hidden)).reshape(-1, 32)
        assert torch.allclose(ctx.stats["self_attn.q_proj"].H, 2 / 64 * x_norm.T @ x_norm, atol=1e-4)
        return {n: i for i, n in enumerate(ctx.linears)}

    out = run_sequential(tiny, ids, quantize_block, device="cpu", batch_size=3)
    assert seen[0] == [["mlp.down_proj"], ["mlp.gate_proj", "mlp.up_proj"], ["self_attn.k_proj",
                       "self_attn.q_proj", "self_attn.v_proj"], ["self_attn.o_proj"]]
    assert len(out) == 3 * 7 and "model.layers.2.mlp.down_proj" in out


def test_linear_filter_and_missing_blocks(tiny: torch.nn.Module) -> None:
    block = decoder_blocks(tiny)[0]
    assert set(block_linears(block, lambda n, m: "mlp" in n)) == {"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}
    with pytest.raises(ValueError, match="cannot find decoder blocks"):
        decoder_blocks(torch.nn.Linear(2, 2))
