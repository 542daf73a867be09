"""GPTQ and AQLM exports: the exported tensors, unpacked as those formats' readers do, give exactly
lowbit's weights; what a format cannot hold is refused with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lowbit.core.checkpoint import CheckpointWriter
from lowbit.core.formats import QuantizedWeight
from lowbit.core.uniform import minmax_params, quantize_affine
from lowbit.kernels.export import ExportError, export_aqlm, export_gptq, main, pack_int32, unpack_int32

transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file  # noqa: E402


def _uniform(W: torch.Tensor, bits: int, gs: int, act_order: bool) -> QuantizedWeight:
    d_out, d_in = W.shape
    perm = torch.randperm(d_in, generator=torch.Generator().manual_seed(d_out)) if act_order else torch.arange(d_in)
    s, z = minmax_params(W[:, perm].reshape(-1, gs), bits)
    z = z.clamp_min(1)  # a zero of 0 has no v1 encoding (tested separately)
    codes = quantize_affine(W[:, perm].reshape(-1, gs), s[:, None], z[:, None], bits).reshape(d_out, d_in)
    g_idx = torch.empty(d_in, dtype=torch.int64)
    g_idx[perm] = torch.arange(d_in) // gs
    return QuantizedWeight("uniform", (d_out, d_in), codes[:, torch.argsort(perm)].to(torch.uint8), bits,
                           scales=s.reshape(d_out, -1), zeros=z.reshape(d_out, -1), group_size=gs,
                           g_idx=g_idx if act_order else None)


def _additive(W: torch.Tensor, m: int = 2, b: int = 8, g: int = 8) -> QuantizedWeight:
    d_out, d_in = W.shape
    gen = torch.Generator().manual_seed(d_in + d_out)
    codes = torch.randint(0, 2**b, (d_out, d_in // g, m), generator=gen)
    return QuantizedWeight("additive", (d_out, d_in), codes, b, scales=torch.rand(d_out, generator=gen).half() + 0.5,
                           group_size=g, codebooks=(torch.randn(m, 2**b, g, generator=gen) * 0.01).half())


def _checkpoint(dest: Path, make) -> tuple[Path, dict[str, QuantizedWeight]]:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).float().eval()
    made = {}
    with CheckpointWriter(dest) as w:
        for i, layer in enumerate(model.model.layers):
            block = {}
            for j, (name, lin) in enumerate((n, m) for n, m in layer.named_modules() if isinstance(m, torch.nn.Linear)):
                block[f"model.layers.{i}.{name}"] = make(lin.weight.detach(), j)
            w.add_block(block)
            made.update(block)
        return w.finish(model), made


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_pack_int32_round_trip(bits: int) -> None:
    v = torch.randint(0, 2**bits, (64, 32))
    assert torch.equal(unpack_int32(pack_int32(v, bits, 0), bits, 0), v)
    assert torch.equal(unpack_int32(pack_int32(v, bits, 1), bits, 1), v)


@pytest.mark.parametrize("fmt", ["gptq", "gptq_v2"])
def test_gptq_export_dequantizes_exactly(fmt: str, tmp_path: Path) -> None:
    src, made = _checkpoint(tmp_path / "ck", lambda W, j: _uniform(W, 4, 32, act_order=j % 2 == 0))
    dst = export_gptq(src, tmp_path / "gptq", checkpoint_format=fmt)
    qc = json.loads((dst / "config.json").read_text())["quantization_config"]
    assert (qc["quant_method"], qc["bits"], qc["group_size"], qc["desc_act"], qc["sym"]) == ("gptq", 4, 32, True, False)
    t = load_file(str(dst / "model.safetensors"))
    for name, qw in made.items():
        qweight, qzeros, scales, g_idx = (t[f"{name}.{k}"] for k in ("qweight", "qzeros", "scales", "g_idx"))
        assert qweight.dtype == qzeros.dtype == g_idx.dtype == torch.int32 and scales.dtype == torch.float16
        # the documented unpacking: 8 nibbles per int32, low first; along d_in for qweight, d_out for qzeros
        shifts = torch.arange(0, 32, 4, dtype=torch.int32)
        q = ((qweight[:, None, :] >> shifts[None, :, None]) & 0xF).reshape(-1, qweight.shape[1])  # (d_in, d_out)
        z = ((qzeros[:, :, None] >> shifts[None, None, :]) & 0xF).reshape(qzeros.shape[0], -1)  # (G, d_out)
        z = z + 1 if fmt == "gptq" else z
        g = g_idx.long()
        W = (scales.float()[g] * (q.float() - z.float()[g])).T
        assert torch.equal(W, qw.dequantize()), name
    assert "model.embed_tokens.weight" in t and "lm_head.weight" not in t


def test_gptq_refuses_what_it_cannot_hold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, _ = _checkpoint(tmp_path / "ck", lambda W, j: _additive(W) if j == 3 else _uniform(W, 4, 32, False))
    with pytest.raises(ExportError, match="format 'additive' has no GPTQ form"):
        export_gptq(src, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
    assert main(["gptq", str(src), str(tmp_path / "out")]) == 2
    assert "no GPTQ form" in capsys.readouterr().err

    def zero0(W: torch.Tensor, j: int) -> QuantizedWeight:
        qw = _uniform(W, 4, 32, False)
        qw.codes[0, :32] = (qw.codes[0, :32].long() + qw.zeros[0, 0].long()).clamp(max=15).to(torch.uint8)
        qw.zeros[0, 0] = 0
        return qw
    src0, _ = _checkpoint(tmp_path / "ck0", zero0)
    with pytest.raises(ExportError, match="gptq_v2"):
        export_gptq(src0, tmp_path / "out")
    export_gptq(src0, tmp_path / "out", checkpoint_format="gptq_v2")
    with pytest.raises(Exception, match="already exists"):
        export_gptq(src0, tmp_path / "out", checkpoint_format="gptq_v2")


def test_aqlm_export_dequantizes_exactly(tmp_path: Path) -> None:
    src, made = _checkpoint(tmp_path / "ck", lambda W, j: _additive(W))
    dst = export_aqlm(src, tmp_path / "aqlm")
    qc = json.loads((dst / "config.json").read_text())["quantization_config"]
    want = {"quant_method": "aqlm", "in_group_size": 8, "out_group_size": 1, "num_codebooks": 2,
            "nbits_per_codebook": 8}
    assert {k: qc[k] for k in want} == want
    assert qc["linear_weights_not_to_quantize"] == ["lm_head.weight"]
    t = load_file(str(dst / "model.safetensors"))
    for name, qw in made.items():
        codes, codebooks, scales = (t[f"{name}.{k}"] for k in ("codes", "codebooks", "scales"))
        assert codes.dtype == torch.int8 and codebooks.shape == (2, 256, 1, 8)
        assert scales.shape == (qw.shape[0], 1, 1, 1)
        c = codes.long() % 256  # aqlm.utils.unpack_int_data
        vec = sum(codebooks.float()[m, c[..., m], 0] for m in range(2))  # (d_out, d_in / 8, 8)
        W = scales.float().reshape(-1, 1) * vec.reshape(qw.shape[0], -1)
        assert torch.equal(W, qw.dequantize()), name
    src2, _ = _checkpoint(tmp_path / "ck2", lambda W, j: _uniform(W, 4, 32, False))
    with pytest.raises(ExportError, match="no AQLM form"):
        export_aqlm(src2, tmp_path / "aqlm2")
