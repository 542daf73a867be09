"""Text sources, calibration sampling and evaluation windows, by the reference protocol.

Known data sets are looked up, in order, in ``$LOWBIT_DATA``, in ``../shared/data`` beside the
repository (found from the working directory or this file), and on the Hugging Face hub through
``datasets`` when it is installed and online. Any other name is read as a text file.

Protocol (``shared/data/README.md``): eval = WikiText-2 test, CRLF normalised, tokenized whole,
non-overlapping windows of ``seqlen`` (last partial window dropped); calibration = PTB validation,
tokenized whole, ``nsamples`` windows at random starts drawn with ``random.Random(seed)``.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger(__name__)

KNOWN: dict[str, str] = {"wikitext2": "wiki.test.raw", "ptb": "ptb.valid.txt"}
_HUB: dict[str, tuple[str, str | None, str, str, str]] = {
    # name: (hub path, config, split, text field, joiner)
    "wikitext2": ("wikitext", "wikitext-2-raw-v1", "test", "text", "\n\n"),
    "ptb": ("ptb_text_only", "penn_treebank", "validation", "sentence", " "),
}


class DataNotFoundError(FileNotFoundError):
    """No source of the requested text could be reached."""


def _search_dirs() -> list[Path]:
    dirs: list[Path] = []
    if os.environ.get("LOWBIT_DATA"):
        dirs.append(Path(os.environ["LOWBIT_DATA"]).expanduser())
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for parent in (start, *start.parents):
            if (parent / ".git").exists() or (parent / "noxfile.py").exists():
                dirs += [parent.parent / "shared" / "data", parent / "shared" / "data"]
                break
    return list(dict.fromkeys(dirs))


def _from_hub(name: str) -> str:
    path, config, split, field, joiner = _HUB[name]
    try:
        import datasets
    except ImportError as e:
        raise DataNotFoundError("`datasets` is not installed") from e
    try:
        ds = datasets.load_dataset(path, config, split=split)
    except Exception as e:  # offline, unknown, ...
        raise DataNotFoundError(f"datasets.load_dataset({path!r}, {config!r}) failed: {e}") from e
    return joiner.join(ds[field])


def load_text(source: str) -> str:
    """The text of ``source``: a known name (``wikitext2``, ``ptb``) or a path to a text file.

    Raises:
        DataNotFoundError: nothing found; the message lists every place that was tried.
    """
    if source not in KNOWN:
        path = Path(source).expanduser()
        if not path.is_file():
            raise DataNotFoundError(f"text file {source!r} does not exist (known names: {sorted(KNOWN)})")
        return path.read_text(encoding="utf-8").replace("\r\n", "\n")
    tried = []
    for d in _search_dirs():
        f = d / KNOWN[source]
        tried.append(str(f))
        if f.is_file():
            log.info("reading %s from %s", source, f)
            return f.read_text(encoding="utf-8").replace("\r\n", "\n")
    try:
        return _from_hub(source)
    except DataNotFoundError as e:
        raise DataNotFoundError(
            f"no copy of {source!r} found; looked in: {', '.join(tried) or '(no directories)'}; "
            f"and the hub: {e}. Set LOWBIT_DATA to a directory holding {KNOWN[source]}.") from None


def tokenize(tokenizer: Any, text: str) -> Tensor:
    """The whole text as one ``(n_tokens,)`` int64 tensor (no special tokens added)."""
    ids = tokenizer(text, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    return torch.tensor(ids, dtype=torch.int64)


def eval_windows(tokens: Tensor, seqlen: int, n: int | None = None) -> Tensor:
    """Non-overlapping windows ``(n_windows, seqlen)``; the last partial one is dropped.

    ``n`` keeps only the first ``n`` windows (None: all).
    """
    if seqlen < 2:
        raise ValueError(f"seqlen must be at least 2, got {seqlen}")
    total = tokens.numel() // seqlen
    if total == 0:
        raise ValueError(f"text has {tokens.numel()} tokens, fewer than one window of {seqlen}")
    if n is not None:
        if n < 1:
            raise ValueError(f"eval windows must be at least 1, got {n}")
        total = min(total, n)
    return tokens[: total * seqlen].reshape(total, seqlen)


def calibration_windows(tokens: Tensor, nsamples: int, seqlen: int, seed: int = 0) -> Tensor:
    """``(nsamples, seqlen)`` windows at starts ``random.Random(seed).randint(0, n - seqlen - 1)``."""
    if nsamples < 1:
        raise ValueError(f"the calibration set is empty: nsamples must be at least 1, got {nsamples}")
    if tokens.numel() <= seqlen + 1:
        raise ValueError(f"calibration text has {tokens.numel()} tokens, too few for windows of {seqlen}")
    rng = random.Random(seed)
    starts = [rng.randint(0, tokens.numel() - seqlen - 1) for _ in range(nsamples)]
    return torch.stack([tokens[s: s + seqlen] for s in starts])
