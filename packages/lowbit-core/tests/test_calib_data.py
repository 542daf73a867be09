"""Hessian and activation statistics; data sources, windows and calibration sampling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lowbit.core.calib import LayerStats, accumulate_hessian, make_empty_hessian
from lowbit.core.data import DataNotFoundError, calibration_windows, eval_windows, load_text
from lowbit.core.models import ModelNotFoundError, resolve_model


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 20), min_size=1, max_size=5), dtype=st.sampled_from([torch.float32,
                                                                                         torch.float64]))
def test_running_hessian_equals_batch_formula(sizes: list[int], dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(sum(sizes))
    xs = [torch.randn(n, 7, generator=g) for n in sizes]
    H, n = make_empty_hessian(7, dtype=dtype), 0
    for x in xs:
        H, n = accumulate_hessian(H, x, n)
    X = torch.cat(xs).double()
    assert n == X.shape[0]
    assert torch.allclose(H.double(), 2 / n * X.T @ X, atol=1e-5)


def test_layer_stats() -> None:
    x = torch.randn(3, 5, 4)
    s = LayerStats.empty(4, "cpu")
    s.update(x[:1])
    s.update(x[1:])
    flat = x.reshape(-1, 4)
    assert s.n_tokens == 15 and s.act.n == 15
    assert torch.allclose(s.act.norm, flat.norm(dim=0), atol=1e-5)
    assert torch.allclose(s.act.absmax, flat.abs().amax(0))
    assert torch.allclose(s.act.mean_abs, flat.abs().mean(0), atol=1e-6)


def test_eval_windows() -> None:
    t = torch.arange(10)
    assert eval_windows(t, 3).tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert eval_windows(t, 3, 2).shape == (2, 3)
    with pytest.raises(ValueError, match="fewer than one window"):
        eval_windows(t, 11)


def test_calibration_windows_seeded_and_checked() -> None:
    t = torch.arange(1000)
    a, b = calibration_windows(t, 5, 16, 0), calibration_windows(t, 5, 16, 0)
    assert torch.equal(a, b) and a.shape == (5, 16)
    assert not torch.equal(a, calibration_windows(t, 5, 16, 1))
    assert ((a[:, 1:] - a[:, :-1]) == 1).all()  # contiguous windows
    with pytest.raises(ValueError, match="calibration set is empty"):
        calibration_windows(t, 0, 16)
    with pytest.raises(ValueError, match="too few"):
        calibration_windows(t[:10], 1, 16)


def test_load_text_from_lowbit_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ptb.valid.txt").write_bytes(b"a b\r\nc d\r\n")
    monkeypatch.setenv("LOWBIT_DATA", str(tmp_path))
    assert load_text("ptb") == "a b\nc d\n"
    f = tmp_path / "mine.txt"
    f.write_text("hello")
    assert load_text(str(f)) == "hello"


def test_missing_text_is_a_clear_error() -> None:
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_text("/no/such/file.txt")


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(tmp_path / "nope")
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_model(tmp_path)
