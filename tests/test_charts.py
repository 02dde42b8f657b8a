"""ui/charts.py directly: each figure builder on tiny arrays, and the traces and values it draws.
(The graph view, charts.graph_figure, is tested through the explorer page.)"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cprune_core.ablation.statistics import Correlation, ZeroShotCurve
from cprune_core.schema import EventKind, MetricEvent
from ui import charts


def values(array) -> list:
    """A trace's array as a list with NaN as None (plotly keeps NumPy arrays, tuples or lists)."""
    return [None if isinstance(v, float) and math.isnan(v) else v for v in np.asarray(array, dtype=object).tolist()]


def test_filter_grid_tiles_a_conv_filter_channel_by_channel():
    weights = np.arange(2 * 2 * 3, dtype=float).reshape(2, 2, 3) - 5  # 2 input channels of 2 x 3 taps
    grid = charts.filter_grid(weights)
    assert grid.shape == (3, 8)  # channels side by side (2 columns), a blank row and column after each
    assert np.array_equal(grid[:2, :3], weights[0]) and np.array_equal(grid[:2, 4:7], weights[1])
    assert np.isnan(grid[2]).all() and np.isnan(grid[:, 3]).all()


def test_filter_grid_lays_a_linear_neuron_or_1x1_filter_out_near_square():
    for weights in (np.arange(1.0, 6.0), np.arange(1.0, 6.0).reshape(5, 1, 1)):
        grid = charts.filter_grid(weights)
        assert grid.shape == (2, 3)
        assert values(grid.ravel()) == [1.0, 2.0, 3.0, 4.0, 5.0, None]


def test_filter_picture_colours_by_sign_around_white_with_a_symmetric_limit():
    picture, limit = charts.filter_picture(np.array([-2.0, 0.0, 2.0, 1.0]), side_px=4)
    assert limit == 2.0 and picture.dtype == np.uint8 and picture.shape == (4, 4, 3)  # 2 x 2 cells of 2 px
    negative, zero, positive = picture[0, 0], picture[0, 2], picture[2, 0]
    assert negative[2] > negative[0] and positive[0] > positive[2]  # blue below 0, red above
    assert (zero >= 240).all(), "0 is white"


def test_score_histogram_draws_every_score_and_the_cut_off():
    scores = np.array([0.1, 0.2, 0.2, 0.9])
    figure = charts.score_histogram(scores, 0.2, "l1")
    [histogram] = figure.data
    assert list(histogram.x) == list(scores) and histogram.name == "l1"
    [cut] = figure.layout.shapes
    assert cut.x0 == cut.x1 == 0.2
    [label] = figure.layout.annotations  # above the plotting area, where no bar can be
    assert label.yref == "paper" and label.y == 1 and label.yanchor == "bottom"
    assert figure.layout.xaxis.title.text == "l1 score"


def test_layerwise_figures_draw_each_layer():
    long = pd.DataFrame({"layer": ["a", "a", "b"], "centrality": [0.1, 0.3, 0.5]})
    [box] = charts.layerwise_boxes(long).data
    assert list(box.x) == ["a", "a", "b"] and list(box.y) == [0.1, 0.3, 0.5]
    summary = pd.DataFrame({"layer": ["a", "b"], "gini": [0.2, 0.4], "top10_share": [0.3, 0.5],
                            "density": [0.01, 0.02]})
    lines = charts.layerwise_concentration(summary).data
    assert [line.name for line in lines] == ["gini", "top 10% share", "density"]
    assert [list(line.y) for line in lines] == [[0.2, 0.4], [0.3, 0.5], [0.01, 0.02]]
    assert all(list(line.x) == ["a", "b"] for line in lines)


def events() -> list[MetricEvent]:
    return [MetricEvent(EventKind.START, total_steps=4),
            MetricEvent(EventKind.STEP, epoch=1, progress=0.25, train_loss=2.0, train_acc=0.1),
            MetricEvent(EventKind.STEP, epoch=1, progress=0.5, train_loss=1.5, train_acc=None),
            MetricEvent(EventKind.EPOCH, epoch=1, train_loss=1.7, train_acc=0.2, val_acc=0.3),
            MetricEvent(EventKind.EPOCH, epoch=2, train_loss=1.0, train_acc=0.5, val_acc=0.6)]


def test_curve_points_from_steps_with_validation_per_epoch():
    points = charts.curve_points("baseline", events(), epochs=2)
    assert list(points.itertuples(index=False, name=None)) == [
        ("baseline", 0.5, "train loss", 2.0), ("baseline", 0.5, "train acc", 10.0),  # accuracies in %
        ("baseline", 1.0, "train loss", 1.5),  # its missing accuracy is left out, not drawn as 0
        ("baseline", 1, "val acc", 30.0), ("baseline", 2, "val acc", 60.0)]


def test_curve_points_from_epoch_means_when_no_step_was_logged():
    epochs_only = [event for event in events() if event.kind != EventKind.STEP]
    points = charts.curve_points("pruned", epochs_only, epochs=2)
    train = points[points["metric"] == "train loss"]
    assert list(zip(train["epoch"], train["value"], strict=True)) == [(1, 1.7), (2, 1.0)]
    assert charts.curve_points("nothing yet", [], epochs=2).empty


def test_training_curves_put_loss_left_accuracy_right_one_colour_per_run():
    curves = pd.concat([charts.curve_points("baseline", events(), 2), charts.curve_points("pruned", events(), 2)])
    figure = charts.training_curves(curves, {"baseline": "baseline", "pruned": "pruned"})
    names = [trace.name for trace in figure.data]
    assert names == [f"{run}: {metric}" for run in ("baseline", "pruned")
                     for metric in ("train loss", "train acc", "val acc")]
    by_name = {trace.name: trace for trace in figure.data}
    assert by_name["baseline: train loss"].xaxis == "x" and by_name["baseline: val acc"].xaxis == "x2"
    assert list(by_name["pruned: val acc"].y) == [30.0, 60.0]
    assert by_name["baseline: train loss"].line.color == by_name["baseline: val acc"].line.color
    assert by_name["baseline: train loss"].line.color != by_name["pruned: train loss"].line.color
    assert figure.layout.yaxis2.range == (0, 100)


def test_a_run_has_its_modes_colour_on_every_page_whatever_the_order():
    """The Fine-tune page's "baseline" and "pruned" and the Results page's "#7 pruned" and "#6 baseline" get the
    colour of their mode, in any order; a second run of a mode gets another shade of it."""
    assert charts.run_colours(["baseline", "pruned"]) == charts.run_colours(["pruned", "baseline"])[::-1]
    first, second, other = charts.run_colours(["pruned", "pruned", "baseline"])
    assert first == charts.MODE_COLOURS["pruned"][0] and second in charts.MODE_COLOURS["pruned"][1:]
    assert other == charts.MODE_COLOURS["baseline"][0]
    curves = pd.concat([charts.curve_points("#7 pruned", events(), 2), charts.curve_points("#6 baseline", events(), 2)])
    figure = charts.training_curves(curves, {"#7 pruned": "pruned", "#6 baseline": "baseline"})
    colours = {trace.legendgroup: trace.line.color for trace in figure.data}
    assert colours == {"#7 pruned": charts.MODE_COLOURS["pruned"][0], "#6 baseline": charts.MODE_COLOURS["baseline"][0]}
    [baseline, pruned] = charts.accuracy_vs_macs(runs_table()).data
    assert (baseline.marker.color, pruned.marker.color) == (colours["#6 baseline"], colours["#7 pruned"])


def runs_table() -> pd.DataFrame:
    return pd.DataFrame({"macs": [10e6, 20e6, 30e6], "test_acc": [0.5, 0.6, 1.0], "mode": ["baseline", "pruned", "pruned"],
                         "backbone": ["lite0"] * 3, "id": [1, 2, 3], "setting": ["—", "l1, keep 0.5", "l2, keep 0.5"],
                         "dataset": ["flowers"] * 3, "image_size": [224, 224, 128]})


def test_accuracy_vs_macs_one_point_per_run_in_percent_and_millions():
    figure = charts.accuracy_vs_macs(runs_table())
    points = {trace.name: (list(trace.x), list(trace.y)) for trace in figure.data}
    assert points == {"baseline, lite0": ([10], [50]), "pruned, lite0": ([20, 30], [60, 100])}
    assert figure.layout.yaxis.range == (0, 101)  # a percentage, whatever the points (not an axis to 1.7)
    assert "MACs per image" in figure.layout.xaxis.title.text


def test_matrix_heatmap_symmetric_range_and_dimmed_rows():
    matrix = np.array([[1.0, -3.0], [2.0, 0.5]])
    [heatmap] = charts.matrix_heatmap(matrix, "S", "neuron", "neuron", dimmed_rows=np.array([False, True])).data
    assert values(np.asarray(heatmap.z).ravel()) == [1.0, -3.0, None, None]
    assert (heatmap.zmin, heatmap.zmax) == (-3.0, 3.0)
    [plain] = charts.matrix_heatmap(np.array([[0.0, 2.0]]), "A", "x", "y", symmetric_range=False).data
    assert (plain.zmin, plain.zmax, plain.colorscale[0][1]) == (0.0, 2.0, "#440154")  # Viridis from 0
    assert matrix[1, 0] == 2.0, "the caller's matrix is not changed"


def test_power_iteration_figures():
    x = np.array([0.1, 0.7, 0.2])
    bars = charts.iterate_bars(x, step=3)
    assert list(bars.data[0].y) == list(x) and list(bars.data[0].x) == [0, 1, 2]
    assert bars.layout.title.text == "x_3"
    changes = np.array([0.5, 0.01, 0.0])
    figure = charts.convergence(changes, tolerance=3e-6, step=2)
    assert list(figure.data[0].x) == [1, 2, 3] and list(figure.data[0].y) == [0.5, 0.01, 1e-12]  # 0 on a log axis
    tolerance, step = figure.layout.shapes
    assert tolerance.y0 == tolerance.y1 == 3e-6 and step.x0 == step.x1 == 2
    assert figure.layout.yaxis.type == "log" and figure.layout.yaxis.exponentformat == "power"  # 10⁻⁶, not "1μ"


def test_importance_scatter_one_panel_per_criterion_with_its_rho():
    neurons = np.array([0, 2])
    scores = {"l1": np.array([[1.0, 2.0, 3.0]]), "random": np.array([[0.3, 0.2, 0.1], [0.9, 0.8, 0.7]])}
    correlations = {"l1": Correlation("l1", 0.5, -0.25, 0.75, [0.5]),
                    "random": Correlation("random", math.nan, math.nan, math.nan, [math.nan, math.nan])}
    figure = charts.importance_scatter(scores, neurons, np.array([0.01, -0.02]), correlations)
    l1, random = figure.data
    assert list(l1.x) == [1.0, 3.0] and list(random.x) == [0.3, 0.1]  # the measured neurons; random's first seed
    assert list(l1.y) == [0.01, -0.02] and l1.xaxis == "x" and random.xaxis == "x2"
    titles = [annotation.text for annotation in figure.layout.annotations]
    assert titles == ["l1<br>ρ +0.500 [-0.25, +0.75]", "random<br>ρ undefined"]


def test_zero_shot_figure_draws_random_as_a_band_and_each_criterion_as_a_line():
    curve = ZeroShotCurve(keep_ratios=np.array([0.1, 0.5]), kept=np.array([1, 5]),
                          accuracy={"random": np.array([[0.2, 0.4], [0.3, 0.6]]),
                                    "eigenvector": np.array([[0.25, 0.5]])},
                          loss={}, full_acc=0.8)
    figure = charts.zero_shot_figure(curve)
    high, low, mean, eigenvector = figure.data
    assert list(high.y) == pytest.approx([30, 60]) and list(low.y) == pytest.approx([20, 40])
    assert low.fill == "tonexty" and list(mean.y) == pytest.approx([25, 50])
    assert eigenvector.name == "eigenvector" and list(eigenvector.y) == pytest.approx([25, 50])
    assert eigenvector.line.width == 3  # the paper's criterion stands out
    [unpruned] = figure.layout.shapes
    assert unpruned.y0 == pytest.approx(80)


HOSTILE = '<a href="https://example.com">x</a><b>bold</b><br><span style="color:red">red</span>'


def markup(figure) -> list[str]:
    """Every text of ``figure`` Plotly shows and could read as markup: trace names, categories (tick labels),
    custom data where a hover template shows it, hover text, texts, titles and annotations."""
    texts = []
    for trace in figure.data:
        shown = ("name", "legendgroup", "x", "y", "hovertext", "text")
        if "customdata" in str(getattr(trace, "hovertemplate", None)):
            shown += ("customdata",)
        for name in shown:
            value = getattr(trace, name, None)
            if value is not None:
                texts += [str(v) for v in np.asarray(value, dtype=object).ravel()]
    layout = figure.layout
    texts += [str(a.text) for a in layout.annotations] + [str(layout.title.text)]
    return texts


def test_names_from_a_file_enter_every_figure_as_text_never_as_plotly_markup():
    """Issue 29.10: a tensor named with HTML appears escaped (Plotly shows it as written) in every figure that
    shows layer or run names; no tag from the name survives."""
    assert charts.plotly_text(HOSTILE) == HOSTILE.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    long = pd.DataFrame({"layer": [HOSTILE, HOSTILE, "b"], "centrality": [0.1, 0.3, 0.5]})
    summary = pd.DataFrame({"layer": [HOSTILE, "b"], "gini": [0.2, 0.4], "top10_share": [0.3, 0.5],
                            "density": [0.01, 0.02], "alpha": [2.0, 3.0], "alpha_shuffled": [4.0, 5.0],
                            "alpha_mid": [2.5, 3.5], "stable_rank": [10.0, 20.0]})
    curves = charts.curve_points(HOSTILE, events(), 2)
    runs = runs_table().assign(dataset=HOSTILE, setting=HOSTILE, backbone=HOSTILE)
    figures = [charts.layerwise_boxes(long), charts.layerwise_concentration(summary), charts.spectral_depth(summary),
               charts.training_curves(curves, {HOSTILE: "pruned"}), charts.accuracy_vs_macs(runs),
               charts.atlas_heatmap([HOSTILE], [HOSTILE], ["l1"], np.array([[0.5]]), np.array([[True]]),
                                    np.array([["hover"]], dtype=object), 1.0, 2, HOSTILE)]
    for figure in figures:
        texts = markup(figure)
        assert any("&lt;a href" in text for text in texts), figure.data[0].type
        assert not any(tag in text for text in texts for tag in ("<a href", "<b>bold", "<span style")), texts
