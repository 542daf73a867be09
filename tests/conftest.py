"""Shared fixtures for the cross-package and recipe tests."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_recipe(name: str) -> ModuleType:
    """Import ``recipes/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", ROOT / "recipes" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def recipe() -> Callable[[str], ModuleType]:
    """``recipe("gptq")`` imports ``recipes/gptq.py``."""
    return load_recipe


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The default real model (SmolLM2-135M), converted once into the cache."""
    from lowbit.core.models import default_model_dir

    return default_model_dir()
