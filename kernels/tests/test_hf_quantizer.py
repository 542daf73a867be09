"""``AutoModelForCausalLM.from_pretrained(DIR)`` on a lowbit checkpoint equals ``load_quantized(DIR)``.

A tiny random Llama (two blocks) whose linears are stored in several formats (uniform groups with
act-order ``g_idx``, per-column tables with sparse outliers, per-row uniform), written by the
checkpoint writer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lowbit.core.checkpoint import CheckpointWriter
from lowbit.core.formats import QuantizedWeight, SparseOutliers
from lowbit.core.uniform import minmax_params, quantize_affine

transformers = pytest.importorskip("transformers")


def _uniform(W: torch.Tensor, bits: int, gs: int | None, act_order: bool) -> QuantizedWeight:
    d_out, d_in = W.shape
    g = gs or d_in
    perm = torch.randperm(d_in, generator=torch.Generator().manual_seed(d_out)) if act_order else None
    Wp = W[:, perm] if perm is not None else W
    s, z = minmax_params(Wp.reshape(-1, g), bits)
    codes = quantize_affine(Wp.reshape(-1, g), s[:, None], z[:, None], bits).reshape(d_out, d_in)
    g_idx = None
    if perm is not None:  # column perm[j] belongs to group j // g
        g_idx = torch.empty(d_in, dtype=torch.int64)
        g_idx[perm] = torch.arange(d_in) // g
        codes = codes[:, torch.argsort(perm)]
    return QuantizedWeight("uniform", (d_out, d_in), codes.to(torch.uint8), bits, scales=s.reshape(d_out, -1),
                           zeros=z.reshape(d_out, -1), group_size=gs, g_idx=g_idx)


def _table(W: torch.Tensor) -> QuantizedWeight:
    d_out, d_in = W.shape
    widths = torch.tensor([2, 3] * (d_in // 2))
    tables = torch.quantile(W.T, torch.linspace(0, 1, 8), dim=1).T.contiguous().half()  # (d_in, 8)
    for c in range(d_in):
        tables[c, 1 << int(widths[c]):] = tables[c, (1 << int(widths[c])) - 1]
    codes = (W.T[:, :, None] - tables.float()[:, None, :]).abs().argmin(2).T
    codes = torch.minimum(codes, (1 << widths[None, :]) - 1)
    rows, cols = torch.tensor([0, 3, 5]), torch.tensor([1, 1, 7])
    out = SparseOutliers(rows, cols, W[rows, cols].half())
    return QuantizedWeight("table", (d_out, d_in), codes.to(torch.uint8), widths, tables=tables, outliers=out)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).float().eval()
    qweights = {}
    with CheckpointWriter(tmp_path_factory.mktemp("ck") / "ck") as w:
        for i, layer in enumerate(model.model.layers):
            block = {}
            for j, (name, lin) in enumerate(n for n in layer.named_modules() if isinstance(n[1], torch.nn.Linear)):
                W = lin.weight.detach()
                qw = (_table(W) if j % 3 == 1 else _uniform(W, 3 + j % 2, 32 if j % 3 == 0 else None, j % 3 == 0))
                block[f"model.layers.{i}.{name}"] = qw
                lin.weight.data.copy_(qw.dequantize())
            w.add_block(block)
            qweights.update(block)
        return w.finish(model)


def test_from_pretrained_equals_load_quantized(checkpoint: Path) -> None:
    import lowbit.kernels  # noqa: F401  (registers "lowbit")
    from lowbit.kernels import QuantLinear, load_quantized

    ref, _ = load_quantized(checkpoint, tokenizer=False)
    model = transformers.AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    n = sum(isinstance(m, QuantLinear) for m in model.modules())
    assert n == 14
    for name, buf in ref.state_dict().items():
        assert torch.equal(model.state_dict()[name], buf), name
        assert model.state_dict()[name].dtype == buf.dtype, name
    ids = torch.tensor([[1, 5, 9, 100, 3, 7]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, ref(ids).logits)
        out = model.generate(ids, max_new_tokens=5, do_sample=False)
        assert torch.equal(out, ref.generate(ids, max_new_tokens=5, do_sample=False))


def test_registered_when_transformers_is_imported_after(checkpoint: Path) -> None:
    code = ("import lowbit.kernels, sys; assert 'transformers' not in sys.modules\n"
            "from transformers import AutoModelForCausalLM\n"
            "m = AutoModelForCausalLM.from_pretrained(sys.argv[1])\n"
            "print(type(m.model.layers[0].self_attn.q_proj).__name__)")
    out = subprocess.run([sys.executable, "-c", code, str(checkpoint)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "QuantLinear"


def test_missing_tensor_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    import lowbit.kernels  # noqa: F401

    bad = tmp_path / "bad"
    shutil.copytree(checkpoint, bad)
    shard = bad / "layers-00000.safetensors"
    ts = load_file(str(shard))
    ts.pop(next(k for k in ts if k.endswith("q_proj.scales")))
    save_file(ts, str(shard), metadata={"format": "pt"})
    with pytest.raises(Exception, match="q_proj"):
        transformers.AutoModelForCausalLM.from_pretrained(bad, dtype=torch.float32)
