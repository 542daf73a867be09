"""One root noxfile: tests of each distribution parametrized over its backends, lint, types, recipes.

CPU installs pin torch to the wheel that lies on the machine's disk (a looser requirement would
download a CUDA build of several GB). ``nox -s lint isolation tests`` is what CI runs (README.md).
"""

from __future__ import annotations

import os
import shutil

import nox

nox.options.sessions = ["lint", "isolation", "tests"]
nox.options.default_venv_backend = "venv"

TORCH = os.environ.get("LOWBIT_TORCH", "torch==2.13.0")
CORE = "./packages/lowbit-core[hf,gguf,test]"
PACKAGES = {
    "core": [CORE],
    "cluster": [CORE, "./packages/lowbit-cluster[test]"],
    "alloc": [CORE, "./packages/lowbit-alloc[test]"],
    "recon": [CORE, "./packages/lowbit-recon[test]"],
    "sparse": [CORE, "./packages/lowbit-sparse[test]"],
    "kernels": [CORE, "./kernels[test]"],
}
ALL = sorted({spec for specs in PACKAGES.values() for spec in specs})
TEST_DIRS = {name: f"packages/lowbit-{name}/tests" for name in PACKAGES} | {"kernels": "kernels/tests"}


def _install(session: nox.Session, *specs: str) -> None:
    """torch pinned, then lowbit-core (with its extras), then the rest: pip 23's resolver does not
    match a sibling's ``lowbit-core`` requirement to a local path given with extras in the same call."""
    session.install(TORCH)
    cores = [s for s in specs if "lowbit-core" in s]
    if cores:
        session.install(*cores)
    rest = [s for s in specs if s not in cores]
    if rest:
        session.install(*rest)


def _pytest(session: nox.Session, *paths: str, env: dict[str, str] | None = None) -> None:
    session.run("pytest", "-q", *paths, *session.posargs, env=env or {})


@nox.session
def core(session: nox.Session) -> None:
    """lowbit-core's own tests."""
    _install(session, *PACKAGES["core"])
    _pytest(session, TEST_DIRS["core"])


@nox.session
@nox.parametrize("backend", ["torch", "numpy", "faiss"])
def cluster(session: nox.Session, backend: str) -> None:
    """lowbit-cluster's tests with k-means on torch, numpy (host) or faiss (scikit-learn is the reference)."""
    specs = PACKAGES["cluster"] + (["faiss-cpu"] if backend == "faiss" else [])
    _install(session, *specs)
    _pytest(session, TEST_DIRS["cluster"], env={"LOWBIT_KMEANS_BACKEND": backend})


@nox.session
@nox.parametrize("name", ["alloc", "recon", "sparse"])
def package(session: nox.Session, name: str) -> None:
    """The tests of one torch-only distribution."""
    _install(session, *PACKAGES[name])
    _pytest(session, TEST_DIRS[name])


@nox.session
@nox.parametrize("backend", ["torch", "interpreter", "cuda"])
def kernels(session: nox.Session, backend: str) -> None:
    """lowbit-kernels on the torch reference, Triton's interpreter (CPU) or CUDA (skipped without a GPU)."""
    env = {"LOWBIT_KERNEL_BACKEND": backend}
    specs = list(PACKAGES["kernels"])
    if backend == "cuda" and shutil.which("nvidia-smi") is None:
        session.skip("no CUDA device")
    if backend != "torch":
        specs.append("triton")
    if backend == "interpreter":
        env["TRITON_INTERPRET"] = "1"
    _install(session, *specs)
    _pytest(session, TEST_DIRS["kernels"], env=env)


@nox.session
def recipes(session: nox.Session) -> None:
    """End-to-end recipe tests on the real model (SmolLM2-135M) with small budgets."""
    _install(session, *ALL)
    _pytest(session, "tests")


@nox.session
def tests(session: nox.Session) -> None:
    """Every package's tests and the recipe tests in one environment (what CI runs)."""
    _install(session, *ALL, "faiss-cpu")
    _pytest(session)


@nox.session
def isolation(session: nox.Session) -> None:
    """``pip install lowbit-core lowbit-recon`` alone imports without transformers, triton or faiss."""
    _install(session, "./packages/lowbit-core", "./packages/lowbit-recon")
    session.run("python", "-c", "import sys, lowbit.recon, lowbit.core.recipe; "
                "bad = [m for m in ('transformers', 'triton', 'faiss') if m in sys.modules]; "
                "assert not bad, bad; print('lowbit.recon', lowbit.recon.__version__, 'imports alone')")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole tree."""
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy over the libraries."""
    _install(session, *ALL, "mypy")
    sources = [f"{d}/src/lowbit" for d in (*(f"packages/lowbit-{n}" for n in PACKAGES if n != "kernels"), "kernels")]
    session.run("mypy", "--ignore-missing-imports", "--namespace-packages", "--explicit-package-bases", *sources)
