"""Shared fixtures for the cross-package and recipe tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from lowbit.core.recipe import load_recipe as load_recipe_file

ROOT = Path(__file__).resolve().parents[1]


def load_recipe(name: str) -> ModuleType:
    """Import ``recipes/<name>.py`` as a module."""
    return load_recipe_file(ROOT / "recipes" / f"{name}.py")


@pytest.fixture(scope="session")
def recipe() -> Callable[[str], ModuleType]:
    """``recipe("gptq")`` imports ``recipes/gptq.py``."""
    return load_recipe


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The default real model (SmolLM2-135M), converted once into the cache."""
    from lowbit.core.models import default_model_dir

    return default_model_dir()


@pytest.fixture(scope="session")
def small_model(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M with its first two decoder blocks (real weights, tokenizer and architecture),
    saved as a plain checkpoint: end-to-end tests of slow methods stay near a minute on two cores."""
    from lowbit.core.hf import load_model

    model, tok = load_model(model_dir)
    model.model.layers = model.model.layers[:2]
    model.config.num_hidden_layers = 2
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:2]
    out = tmp_path_factory.mktemp("smol2")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
