"""Spectral figures (cprune_core/spectral.py, powerlaw_fit.py): the power-law fit recovers a planted exponent and
agrees with the ``powerlaw`` package, the norms agree with numpy, every way of computing singular values gives the
same ones, a trained layer differs from its shuffled baseline, and the awkward layers get NaN with a reason."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

from cprune_core import spectral
from cprune_core.cli import main
from cprune_core.errors import ConfigError, NonFiniteWeightsError
from cprune_core.layer_report import LAYERWISE_COLUMNS
from cprune_core.model_source import FileSource
from cprune_core.powerlaw_fit import MIN_TAIL, fit_power_law
from cprune_core.spectral import (SPECTRAL_COLUMNS, layer_matrices, layer_spectrum, shuffled, spectral_row, spectrum,
                                  weight_spectrum)
from ui import charts
from weights_files import save_safetensors


def pareto(alpha: float, count: int, rng: np.random.Generator, low: float = 1.0) -> np.ndarray:
    """Draws of density ∝ x^-alpha above ``low`` (inverse CDF)."""
    return low * (1 - rng.random(count)) ** (-1 / (alpha - 1))


def planted_matrix(alpha: float, rows: int, columns: int, seed: int) -> np.ndarray:
    """W = U diag(s) V^T whose ESD (s^2) is a Pareto tail of exponent ``alpha`` above 1 over a bulk below it."""
    rng = np.random.default_rng(seed)
    eigenvalues = np.r_[pareto(alpha, columns * 3 // 4, rng), rng.uniform(0.05, 0.9, columns - columns * 3 // 4)]
    u = np.linalg.qr(rng.standard_normal((rows, columns)))[0]
    v = np.linalg.qr(rng.standard_normal((columns, columns)))[0]
    return u @ np.diag(np.sqrt(eigenvalues)) @ v.T


@pytest.mark.parametrize("alpha", [2.5, 3.5, 5.0])
def test_alpha_is_recovered_from_a_planted_power_law_spectrum(alpha):
    matrix = planted_matrix(alpha, 900, 600, seed=int(alpha * 10))
    figures = weight_spectrum(torch.from_numpy(matrix))
    fit = figures.fit
    assert figures.spectrum.method == "svd" and len(figures.spectrum.singular_values) == 600
    assert abs(fit.alpha - alpha) < 3 * fit.sigma and fit.sigma < 0.25 * (alpha - 1)
    assert 0.9 < fit.xmin < 1.6, "xmin found where the planted tail starts, above the bulk"
    assert fit.ks < 0.05 and fit.vs_exponential > 0, "a power law fits, better than an exponential"


def test_the_fit_agrees_with_the_powerlaw_package():
    powerlaw = pytest.importorskip("powerlaw")
    rng = np.random.default_rng(3)
    values = np.r_[pareto(3.2, 700, rng), rng.uniform(0.1, 0.95, 200)]
    ours = fit_power_law(values)
    ordered = np.sort(values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # powerlaw 2.0 bounds alpha to [0, 3] unless told otherwise: weight matrices' alphas run from 2 to 10.
        theirs = powerlaw.Fit(values, xmin=(ordered[0], ordered[-MIN_TAIL]), verbose=False,
                              parameter_ranges={"alpha": [1, 50]})
        at_our_xmin = powerlaw.Fit(values, xmin=ours.xmin, verbose=False, parameter_ranges={"alpha": [1, 50]})
        ratio, p = at_our_xmin.distribution_compare("power_law", "exponential", normalized_ratio=True)
    assert ours.alpha == pytest.approx(at_our_xmin.power_law.alpha, rel=1e-9), "the same MLE at the same xmin"
    # The KS distance: theirs compares with the empirical CDF's upper steps only, ours is the two-sided supremum.
    assert 0 <= ours.ks - at_our_xmin.power_law.D <= 1 / ours.tail + 1e-12
    assert abs(ours.alpha - theirs.power_law.alpha) < ours.sigma and abs(ours.xmin - theirs.xmin) < 0.1
    assert ours.vs_exponential == pytest.approx(ratio, abs=0.02) and ours.vs_exponential_p == pytest.approx(p, abs=0.01)


def test_the_median_rule_is_alphapruning_alpha_mid():
    values = np.random.default_rng(4).uniform(1, 5, 41)
    ordered = np.sort(values)
    fit = fit_power_law(values, xmin="median")
    tail = ordered[20:]
    assert fit.xmin == ordered[20] and fit.tail == 21
    assert fit.alpha == pytest.approx(1 + len(tail) / np.log(tail / tail[0]).sum())


def test_stable_rank_and_spectral_norm_against_numpy():
    rng = np.random.default_rng(7)
    linear = rng.standard_normal((13, 7))
    figures = spectrum(linear)
    assert figures.spectral_norm == pytest.approx(np.linalg.norm(linear, 2))
    assert figures.stable_rank == pytest.approx(np.linalg.norm(linear, "fro") ** 2 / np.linalg.norm(linear, 2) ** 2)
    assert np.allclose(np.sort(figures.eigenvalues), np.sort(np.linalg.eigvalsh(linear.T @ linear)))
    conv = rng.standard_normal((6, 4, 3, 3))  # WeightWatcher's pooling: one 6 x 4 matrix per kernel position
    slices = [conv[:, :, i, j] for i in range(3) for j in range(3)]
    pooled = spectrum(torch.from_numpy(conv))
    assert pooled.matrices == 9 and pooled.shape == (6, 4) and len(pooled.singular_values) == 36
    assert np.allclose(pooled.singular_values, np.sort(np.concatenate([np.linalg.svd(s, compute_uv=False)
                                                                        for s in slices]))[::-1])
    assert pooled.spectral_norm == pytest.approx(max(np.linalg.norm(s, 2) for s in slices))
    assert pooled.stable_rank == pytest.approx(np.linalg.norm(conv) ** 2 / pooled.spectral_norm ** 2)
    assert np.array_equal(layer_matrices(conv)[4], conv[:, :, 1, 1])


def test_the_gram_and_lanczos_methods_give_the_svd_values(monkeypatch):
    matrix = np.random.default_rng(8).standard_normal((120, 40))
    exact = spectrum(matrix)
    monkeypatch.setattr(spectral, "EXACT_COST", 0)
    gram = spectrum(matrix)
    monkeypatch.setattr(spectral, "GRAM_SIDE", 10)
    monkeypatch.setattr(spectral, "TOP_K", 12)
    top = spectrum(matrix)
    assert (exact.method, gram.method, top.method) == ("svd", "gram", "top-k")
    assert np.allclose(gram.singular_values, exact.singular_values, rtol=1e-8, atol=1e-6)
    assert len(top.singular_values) == 12 and np.allclose(top.singular_values, exact.singular_values[:12])
    assert top.stable_rank == pytest.approx(exact.stable_rank), "the Frobenius norm stays exact"


def test_a_trained_layer_differs_from_its_shuffled_baseline(lite0):
    weight = lite0.model.get_submodule("head.1").weight.detach()
    figures = weight_spectrum(weight, "head.1")
    fit = figures.fit
    assert fit.fitted and 2 < fit.alpha < 8, "a trained layer's tail, in WeightWatcher's usual range"
    assert np.array_equal(np.sort(shuffled(weight, 1).ravel()), np.sort(weight.numpy().ravel()))
    for seed in range(5):
        baseline = spectrum(shuffled(weight, seed)).fit()
        assert baseline.alpha > fit.alpha + 2 * fit.sigma, "shuffling thins the tail: alpha rises"
        assert baseline.ks > 2 * fit.ks and baseline.vs_exponential < 0, "and the power law fits it worse"
    assert figures.shuffled_fit.alpha == spectrum(shuffled(weight, 0)).fit().alpha


def test_awkward_layers_get_nan_with_a_reason():
    zero = weight_spectrum(torch.zeros(20, 30))
    assert zero.spectrum.spectral_norm == 0 and math.isnan(zero.spectrum.stable_rank)
    assert math.isnan(zero.fit.alpha) and zero.note.startswith("zero layer")
    rank_two = weight_spectrum(torch.randn(30, 2) @ torch.randn(2, 40))
    assert rank_two.spectrum.rank == 2 and "rank 2" in rank_two.note and math.isnan(rank_two.fit.alpha)
    assert rank_two.spectrum.stable_rank > 1
    depthwise = weight_spectrum(torch.randn(32, 1, 3, 3))  # 9 matrices of 32 x 1: 9 eigenvalues
    assert len(depthwise.spectrum.singular_values) == 9 and math.isnan(depthwise.fit.alpha)
    assert "only 9 eigenvalues" in depthwise.note
    orthogonal = weight_spectrum(torch.from_numpy(np.linalg.qr(np.random.default_rng(1).standard_normal((40, 40)))[0]))
    assert orthogonal.spectrum.stable_rank == pytest.approx(40) and "all equal" in orthogonal.note
    assert "upper half holds 6" in fit_power_law(np.arange(1.0, 13.0), xmin="median").note


def test_bad_input_is_refused_in_one_sentence():
    with pytest.raises(NonFiniteWeightsError, match="Layer fc has NaN or Inf"):
        weight_spectrum(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), "fc")
    with pytest.raises(ConfigError, match="rank 2"):
        spectrum(torch.zeros(3, 4, 5))
    with pytest.raises(ConfigError, match="finite"):
        fit_power_law([1.0, np.inf])
    with pytest.raises(ConfigError, match="xmin rule"):
        fit_power_law(np.arange(1.0, 30.0), xmin="peak")


def test_the_layerwise_table_writes_the_spectral_columns(tmp_path, capsys):
    generator = torch.Generator().manual_seed(2)
    path = save_safetensors({"a.weight": torch.randn(64, 48, generator=generator),
                             "b.weight": torch.randn(16, 8, 3, 3, generator=generator)}, tmp_path / "m.safetensors")
    assert main(["graph", "--weights", str(path), "--layer", "all", "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "layerwise.csv").set_index("layer")
    assert list(table.reset_index().columns) == list(LAYERWISE_COLUMNS) and set(SPECTRAL_COLUMNS) <= set(table.columns)
    source = FileSource.open(path)
    for layer in ("a", "b"):
        expected = spectral_row(layer_spectrum(source, layer))
        for column in ("alpha", "alpha_xmin", "alpha_ks", "alpha_shuffled", "stable_rank", "spectral_norm"):
            assert table.loc[layer, column] == pytest.approx(expected[column], rel=1e-6)
    assert table.loc["b", "eigenvalues"] == 72 and table.loc["a", "spectral_method"] == "svd"


def test_the_charts_draw_the_fit_over_the_tail():
    figures = weight_spectrum(torch.from_numpy(planted_matrix(3.0, 300, 200, seed=5)))
    fit = figures.fit
    drawn = charts.esd_loglog({"trained": figures.spectrum.nonzero_eigenvalues}, {"trained": (fit.alpha, fit.xmin,
                                                                                               fit.tail)})
    points, line = drawn.data
    assert line.x[0] == pytest.approx(fit.xmin) and line.x[-1] == pytest.approx(figures.spectrum.eigenvalues[-1])
    slope = np.diff(np.log(line.y)) / np.diff(np.log(line.x))
    assert np.allclose(slope, -fit.alpha), "a straight line of slope -alpha on log-log axes"
    summary = pd.DataFrame([{"layer": "a", **spectral_row(figures)}, {"layer": "b", **spectral_row(figures)}])
    assert [trace.name for trace in charts.spectral_depth(summary).data] == [
        "alpha (trained)", "alpha (entries shuffled)", "alpha_mid (xmin at the median)", "stable rank"]


@pytest.mark.usefixtures("app_home")
def test_the_layerwise_page_and_the_explorer_show_the_spectral_figures(lite0):
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("pages/layerwise.py").run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value.set_index("layer")
    figures = weight_spectrum(lite0.model.get_submodule("head.1").weight.detach(), "head.1")
    assert table.loc["head.1", "alpha"] == pytest.approx(figures.fit.alpha)
    assert table.loc["head.1", "alpha_shuffled"] == pytest.approx(figures.shuffled_fit.alpha)
    at.selectbox(key="spectral_layer").set_value("head.1").run()
    assert any(f"alpha {figures.fit.alpha:.2f}" in caption.value.replace("\\", "") for caption in at.caption)
    at.switch_page("pages/explorer.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Spectral tail alpha" in caption.value.replace("\\", "") for caption in at.caption)
