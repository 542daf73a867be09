"""Quantized checkpoints on the real model: quantize (GPTQ, CLAQ), save with --save, load in a fresh
process, and get the same perplexity and the same greedy tokens; size on disk against the accounting.

To stay near a minute on two CPU cores, the model is SmolLM2-135M cut to its first two decoder blocks
(real weights, real tokenizer, real architecture); the full model goes through the same code.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch

from lowbit.core import recipe as core_recipe
from lowbit.core.checkpoint import read_tensors
from lowbit.core.hf import load_model

SMALL = ["--nsamples", "8", "--seqlen", "128", "--eval-seqlen", "128", "--eval-windows", "4", "--device", "cpu"]
PROMPT = "The capital of France is"

CHILD = r"""
import json, sys
from lowbit.kernels import load_quantized
from lowbit.core.data import eval_windows, load_text, tokenize
from lowbit.core.eval import perplexity
model, tok = load_quantized(sys.argv[1])
ev = eval_windows(tokenize(tok, load_text("wikitext2")), 128, 4)
ids = tok(sys.argv[2], return_tensors="pt").input_ids
out = model.generate(ids, max_new_tokens=32, do_sample=False, min_new_tokens=32)
print(json.dumps({"ppl": perplexity(model, ev, "cpu"), "tokens": out[0, ids.shape[1]:].tolist()}))
"""


def _header_bytes(path: Path) -> int:
    with open(path, "rb") as f:
        return 8 + int.from_bytes(f.read(8), "little")


@pytest.mark.parametrize("name, cls, args", [
    ("gptq", "GPTQConfig", ["--bits", "3", "--group-size", "64"]),
    ("claq", "CLAQConfig", ["--bits", "2.1", "--reserve", "--kmeans-iters", "10"]),
])
def test_round_trip_in_a_fresh_process(name: str, cls: str, args: list[str], small_model: Path, tmp_path: Path,
                                       recipe: Callable[[str], ModuleType], monkeypatch: pytest.MonkeyPatch) -> None:
    mod = recipe(name)
    kept: dict[str, object] = {}

    def capture(path: object) -> object:
        model, tok = load_model(path)  # type: ignore[arg-type]
        kept.update(model=model, tok=tok)
        return model, tok

    monkeypatch.setattr(core_recipe, "load_model", capture)
    dest = tmp_path / "ck"
    cfg = core_recipe.parse_config(getattr(mod, cls), [*SMALL, *args, "--model", str(small_model), "--save", str(dest)])
    result = mod.run(cfg)

    model, tok = kept["model"], kept["tok"]
    ids = tok(PROMPT, return_tensors="pt").input_ids  # type: ignore[operator]
    with torch.no_grad():
        model.config.use_cache = True  # type: ignore[attr-defined]
        ref = model.generate(ids, max_new_tokens=32, do_sample=False, min_new_tokens=32)  # type: ignore[attr-defined]
    ref_tokens = ref[0, ids.shape[1]:].tolist()

    out = subprocess.run([sys.executable, "-c", CHILD, str(dest), PROMPT], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded["ppl"] == pytest.approx(result["ppl"], rel=1e-4)
    assert loaded["tokens"] == ref_tokens

    # size on disk against the accounting: packed layers = bit report (+ the bits of float parameters
    # kept wider than the accounting's 16 because fp16 would not hold them exactly) + shard headers
    shards = sorted(dest.glob("layers-*.safetensors"))
    tensors = read_tensors(dest)
    layer_keys = [k for k in tensors if any(k.startswith(f"{n}.") for n in json.loads(
        (dest / "config.json").read_text())["quantization_config"]["layers"])]
    wide = sum((tensors[k].element_size() - 2) * tensors[k].numel() for k in layer_keys
               if tensors[k].is_floating_point() and tensors[k].element_size() > 2)
    data = sum(p.stat().st_size - _header_bytes(p) for p in shards)
    accounted = result["bits_per_weight"] * result["n_quantized_weights"] / 8
    print(f"{name}: layers {data} B (+{sum(_header_bytes(p) for p in shards)} B headers), accounted "
          f"{accounted:.0f} B, wider-than-fp16 floats {wide} B")
    assert abs(data - wide - accounted) <= 0.05 * accounted


def test_save_refuses_existing_directory(small_model: Path, tmp_path: Path, recipe: Callable[[str], ModuleType],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    rtn = recipe("rtn")
    (tmp_path / "ck").mkdir()
    assert rtn.main(rtn.run, rtn.RTNConfig, [*SMALL, "--model", str(small_model), "--save", str(tmp_path / "ck")]) == 2
    assert "already exists (pass --overwrite" in capsys.readouterr().err
