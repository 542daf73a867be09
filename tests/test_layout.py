"""The monorepo's packaging rules: PEP 420 namespace, one-way imports, light primitives."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DISTS = sorted([*ROOT.glob("packages/lowbit-*"), ROOT / "kernels"])
SIBLINGS = ["cluster", "alloc", "recon", "sparse", "kernels"]


def test_every_distribution_is_laid_out() -> None:
    assert len(DISTS) == 6
    for d in DISTS:
        area = "kernels" if d.name == "kernels" else d.name.removeprefix("lowbit-")
        assert (d / "pyproject.toml").is_file()
        assert (d / "src" / "lowbit" / area / "__init__.py").is_file()
        assert (d / "tests").is_dir()


def test_no_distribution_ships_lowbit_init() -> None:
    offenders = [str(p) for d in DISTS for p in (d / "src" / "lowbit").glob("__init__.py")]
    assert offenders == [], f"lowbit is a PEP 420 namespace package; remove {offenders}"


def test_siblings_do_not_import_each_other() -> None:
    for d in DISTS:
        area = "kernels" if d.name == "kernels" else d.name.removeprefix("lowbit-")
        for f in (d / "src").rglob("*.py"):
            for m in re.finditer(r"^\s*(?:from|import)\s+lowbit\.(\w+)", f.read_text(), re.M):
                assert m.group(1) in ("core", area), f"{f} imports lowbit.{m.group(1)}"


@pytest.mark.parametrize("area", ["core", "recon", "cluster", "alloc", "sparse"])
def test_importing_a_primitive_stays_light(area: str) -> None:
    code = (f"import sys, lowbit.{area}; heavy = [m for m in ('transformers', 'triton', 'faiss', 'sklearn') "
            "if m in sys.modules]; assert not heavy, heavy; print(lowbit.{area}.__version__)")
    out = subprocess.run([sys.executable, "-c", code.replace("{area}", area)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
