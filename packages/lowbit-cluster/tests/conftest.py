"""Fixtures for lowbit.cluster's tests.

The k-means backend under test comes from the environment variable ``LOWBIT_KMEANS_BACKEND``
(``torch`` by default, ``numpy`` or ``faiss``), so that nox can run this package's tests once per backend:

    LOWBIT_KMEANS_BACKEND=faiss pytest packages/lowbit-cluster/tests

A backend whose library is not installed skips the tests that use it.
"""

from __future__ import annotations

import os

import pytest

BACKEND_ENV = "LOWBIT_KMEANS_BACKEND"


@pytest.fixture(scope="session")
def backend() -> str:
    """The ``kmeans_1d`` backend named by ``LOWBIT_KMEANS_BACKEND`` (default ``torch``)."""
    name = os.environ.get(BACKEND_ENV, "torch").strip().lower() or "torch"
    if name not in ("torch", "numpy", "faiss"):
        raise pytest.UsageError(f"{BACKEND_ENV}={name!r}: expected 'torch', 'numpy' or 'faiss'")
    if name == "faiss":
        pytest.importorskip("faiss")
    return name
