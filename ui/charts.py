"""Plotly figure builders. Inputs are plain arrays; nothing here computes a metric.

Plotly draws a subset of HTML in every text it shows (tick labels, legends, titles, hover text): a tensor named
``<a href="...">`` would be a live link. Every text that comes from a file or a visitor (layer and run names)
goes through ``plotly_text`` before it enters a figure.
"""
from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cprune_core.schema import EventKind, MetricEvent

PRUNED_COLOR = "#8a939c"
SELECTED_COLOR = "#d62728"
# One colour per kind of run, the same on every page (Fine-tune, Results); later runs of a kind get its other shades.
MODE_COLOURS = {"baseline": ("#1f77b4", "#6baed6", "#08519c"), "pruned": ("#ff7f0e", "#fdae6b", "#a63603"),
                "finetune": ("#2ca02c", "#74c476", "#006d2c")}
OTHER_COLOURS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
# Log axes as powers of ten (10⁻⁶), not SI prefixes ("100μ").
LOG_AXIS = dict(type="log", exponentformat="power")


def plotly_text(text: object) -> str:
    """``text`` as Plotly shows it literally: ``<``, ``>`` and ``&`` escaped, so no tag (a link, bold, a line
    break, a styled span) can form. For every label, legend entry, title and hover text that comes from a file or
    a visitor."""
    return html.escape(str(text), quote=False)


def run_colours(modes: list[str]) -> list[str]:
    """A colour for each run of ``modes`` (its mode, in the runs' order): the mode's colour for its first run,
    the mode's other shades for later ones, then shared extra colours."""
    seen: dict[str, int] = {}
    colours = []
    for mode in modes:
        index = seen[mode] = seen.get(mode, -1) + 1
        shades = MODE_COLOURS.get(mode, ())
        colours.append(shades[index] if index < len(shades) else OTHER_COLOURS[index % len(OTHER_COLOURS)])
    return colours


# ColorBrewer's RdBu, reversed: negative weights blue, zero white, positive red.
_DIVERGING = np.array([(5, 48, 97), (33, 102, 172), (67, 147, 195), (146, 197, 222), (209, 229, 240), (247, 247, 247),
                       (253, 219, 199), (244, 165, 130), (214, 96, 77), (178, 24, 43), (103, 0, 31)], float)


def filter_grid(weights: np.ndarray) -> np.ndarray:
    """One neuron's weights as a 2-D grid: a conv filter as input channels x kernel taps (tiled near-square, a
    blank row and column between channels; when the kernel is 1x1, as a Linear neuron), a Linear neuron's
    weights as a near-square grid. Blank cells are NaN."""
    if weights.ndim == 3 and weights.shape[1] * weights.shape[2] > 1:
        channels, kh, kw = weights.shape
        columns = math.ceil(math.sqrt(channels))
        grid = np.full((math.ceil(channels / columns) * (kh + 1), columns * (kw + 1)), np.nan)
        for c in range(channels):
            r, q = divmod(c, columns)
            grid[r * (kh + 1): r * (kh + 1) + kh, q * (kw + 1): q * (kw + 1) + kw] = weights[c]
        return grid
    flat = weights.ravel()
    columns = math.ceil(math.sqrt(flat.size))
    grid = np.full(math.ceil(flat.size / columns) * columns, np.nan)
    grid[: flat.size] = flat
    return grid.reshape(-1, columns)


def filter_picture(weights: np.ndarray, side_px: int = 280) -> tuple[np.ndarray, float]:
    """``filter_grid`` as an RGB picture about ``side_px`` wide (each cell a square block) in a diverging colour
    scale from -limit (blue) through 0 (white) to +limit (red), and that limit (the largest |weight|). A picture,
    not a chart: it costs the browser nothing to show at every click."""
    grid = filter_grid(weights)
    limit = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 0.0
    position = (np.nan_to_num(grid) / (limit or 1.0) + 1) / 2 * (len(_DIVERGING) - 1)
    low = np.clip(np.floor(position).astype(int), 0, len(_DIVERGING) - 2)
    rgb = _DIVERGING[low] + (position - low)[..., None] * (_DIVERGING[low + 1] - _DIVERGING[low])
    rgb[np.isnan(grid)] = 255
    cell = max(1, side_px // max(grid.shape[1], 1))
    return np.repeat(np.repeat(rgb.astype(np.uint8), cell, 0), cell, 1), limit


def score_histogram(scores: np.ndarray, cutoff: float, criterion: str) -> go.Figure:
    """Distribution of a criterion's scores with the keep cut-off drawn (kept: at or above it)."""
    figure = go.Figure(go.Histogram(x=scores, nbinsx=60, marker_color="#2a6f97", name=criterion))
    figure.add_vline(x=cutoff, line=dict(color=SELECTED_COLOR, width=2, dash="dash"))
    # The label above the plotting area, where no bar can be: "kept →" on the side of the kept neurons.
    figure.add_annotation(x=cutoff, y=1, xref="x", yref="paper", yanchor="bottom", xanchor="left",
                          text="cut-off: kept →", showarrow=False, font=dict(color=SELECTED_COLOR))
    figure.update_layout(height=280, margin=dict(l=10, r=10, t=34, b=10), xaxis_title=f"{criterion} score",
                         yaxis_title="neurons", bargap=0.02)
    return figure


def layerwise_boxes(values: pd.DataFrame) -> go.Figure:
    """Centrality distribution of every layer, one box per layer, in network order."""
    figure = px.box(values.assign(layer=values["layer"].map(plotly_text)), x="layer", y="centrality", points=False)
    figure.update_traces(marker_color="#2a6f97")
    figure.update_layout(height=420, margin=dict(l=10, r=10, t=30, b=10), xaxis_tickangle=-60,
                         yaxis_title="eigenvector centrality", xaxis_title=None)
    return figure


def layerwise_concentration(summary: pd.DataFrame) -> go.Figure:
    """Gini and top-10 % share per layer, with graph density (columns of the layer-wise table,
    layer_report.LAYERWISE_COLUMNS; a layer with no graph is a gap)."""
    figure = go.Figure()
    layers = summary["layer"].map(plotly_text)
    for column, name, color in (("gini", "gini", "#2a6f97"), ("top10_share", "top 10% share", "#e07a5f"),
                                ("density", "density", "#81b29a")):
        figure.add_trace(go.Scatter(x=layers, y=summary[column], mode="lines+markers", name=name,
                                    line=dict(color=color), customdata=layers.to_frame(),
                                    hovertemplate="%{customdata[0]}<br>" + name + " %{y:.3f}<extra></extra>"))
    figure.update_layout(height=340, margin=dict(l=10, r=10, t=30, b=10), xaxis_tickangle=-60,
                         yaxis=dict(range=[0, 1]), legend=dict(orientation="h", y=1.08))
    return figure


def curve_points(run: str, events: list[MetricEvent], epochs: int) -> pd.DataFrame:
    """Rows (run, epoch, metric, value) for ``training_curves``: running train loss and accuracy
    from step events (from epoch means when a run logged no steps), val accuracy per epoch; accuracies in %."""
    steps = [e for e in events if e.kind == EventKind.STEP]
    epoch_ends = [e for e in events if e.kind == EventKind.EPOCH]
    rows = []
    for event in steps or epoch_ends:
        x = event.progress * epochs if steps else event.epoch
        rows += [(run, x, "train loss", event.train_loss), (run, x, "train acc", _percent(event.train_acc))]
    rows += [(run, e.epoch, "val acc", _percent(e.val_acc)) for e in epoch_ends]
    frame = pd.DataFrame(rows, columns=["run", "epoch", "metric", "value"])
    return frame.dropna(subset=["value"])


def _percent(fraction: float | None) -> float | None:
    return None if fraction is None else 100 * fraction


def training_curves(curves: pd.DataFrame, modes: dict[str, str]) -> go.Figure:
    """Loss and accuracy (%) of several runs on one figure.

    ``curves`` has one row per point: run, epoch (fractional), metric ("train loss",
    "train acc" or "val acc") and value; ``modes`` maps each run to its mode, which picks its colour
    (``run_colours``: the same on every page). A run has one colour; a metric one dash style.
    """
    figure = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy (%)"), horizontal_spacing=0.14)
    dashes = {"train loss": "solid", "train acc": "dot", "val acc": "solid"}
    runs = list(dict.fromkeys(curves["run"]))
    colours = dict(zip(runs, run_colours([modes.get(run, "") for run in runs])))
    for run, points in curves.groupby("run", sort=False):
        colour = colours[run]
        for metric, series in points.groupby("metric", sort=False):
            figure.add_trace(go.Scatter(
                x=series["epoch"], y=series["value"], name=plotly_text(f"{run}: {metric}"), legendgroup=plotly_text(run),
                mode="lines+markers" if metric == "val acc" else "lines",
                line=dict(color=colour, dash=dashes.get(metric, "solid"))),
                row=1, col=1 if metric.endswith("loss") else 2)
    last_epoch = float(curves["epoch"].max()) if len(curves) else 1.0
    figure.update_xaxes(title_text="epoch", tick0=0, dtick=max(1, math.ceil(last_epoch / 10)))  # whole epochs
    figure.update_yaxes(range=[0, 100], ticksuffix=" %", row=1, col=2)
    figure.update_layout(height=380, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2))
    return figure


def accuracy_vs_macs(runs: pd.DataFrame) -> go.Figure:
    """Test accuracy (%) against MACs per image (millions), one point per run, coloured by mode as the curves are
    (``MODE_COLOURS``), a symbol per backbone. ``runs`` has id, mode, backbone, dataset, image size (px), setting
    (text), test_acc (a fraction) and macs (per image at that size)."""
    shown = runs.assign(accuracy=100 * runs["test_acc"], mmacs=runs["macs"] / 1e6,
                        **{column: runs[column].map(plotly_text) for column in ("backbone", "dataset", "setting")})
    figure = px.scatter(shown, x="mmacs", y="accuracy", color="mode", symbol="backbone",
                        color_discrete_map={mode: shades[0] for mode, shades in MODE_COLOURS.items()},
                        custom_data=["id", "setting", "dataset", "image_size"])
    figure.update_traces(marker=dict(size=11), hovertemplate=(
        "run #%{customdata[0]}: %{customdata[1]}<br>%{customdata[2]}, %{customdata[3]} px<br>"
        "%{y:.1f} % at %{x:,.1f} M MACs<extra></extra>"))
    figure.update_layout(height=380, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=-0.25),
                         xaxis=dict(title="MACs per image (millions, at the run's image size)"),
                         yaxis=dict(title="test accuracy (%)", range=[0, 101], ticksuffix=" %"))
    return figure


def matrix_heatmap(matrix: np.ndarray, title: str, x_title: str, y_title: str, *, symmetric_range: bool = True,
                   dimmed_rows: np.ndarray | None = None, height: int = 320) -> go.Figure:
    """A matrix as a heatmap, row 0 at the top; ``dimmed_rows`` (boolean per row) are blanked out in grey."""
    shown = matrix.astype(float).copy()
    limit = float(np.abs(shown).max()) or 1.0
    if dimmed_rows is not None:
        shown[dimmed_rows] = np.nan
    figure = go.Figure(go.Heatmap(z=shown, colorscale="RdBu_r" if symmetric_range else "Viridis",
                                  zmin=-limit if symmetric_range else 0.0, zmax=limit, hoverongaps=False,
                                  colorbar=dict(thickness=10),
                                  hovertemplate=f"{y_title} %{{y}}<br>{x_title} %{{x}}<br>%{{z:.4f}}<extra></extra>"))
    figure.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=40, b=10), plot_bgcolor=PRUNED_COLOR)
    figure.update_xaxes(title_text=x_title)
    figure.update_yaxes(title_text=y_title, autorange="reversed")
    return figure


def iterate_bars(x: np.ndarray, step: int) -> go.Figure:
    """The iterate x_k of power iteration, one bar per neuron."""
    figure = go.Figure(go.Bar(x=np.arange(len(x)), y=x, marker_color="#2a6f97",
                              hovertemplate="neuron %{x}<br>x %{y:.5f}<extra></extra>"))
    figure.update_layout(title=f"x_{step}", height=300, margin=dict(l=10, r=10, t=40, b=10), bargap=0.1,
                         xaxis_title="neuron", yaxis_title="entry of x")
    return figure


def convergence(changes: np.ndarray, tolerance: float, step: int) -> go.Figure:
    """The L1 change of each step of power iteration on a log axis, down to the tolerance."""
    steps = np.arange(1, len(changes) + 1)
    figure = go.Figure(go.Scatter(x=steps, y=np.maximum(changes, 1e-12), mode="lines+markers", name="L1 change",
                                  hovertemplate="step %{x}<br>change %{y:.3g}<extra></extra>"))
    figure.add_hline(y=tolerance, line=dict(color=SELECTED_COLOR, dash="dash"), annotation_text="tolerance n·10⁻⁶")
    figure.add_vline(x=step, line=dict(color="#888", dash="dot"))
    figure.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), yaxis=LOG_AXIS,
                         xaxis_title="step k", yaxis_title="‖x_k − x_(k−1)‖₁", showlegend=False)
    return figure


def importance_scatter(scores: dict[str, np.ndarray], neurons: np.ndarray, delta_loss: np.ndarray,
                       correlations: dict) -> go.Figure:
    """Each criterion's score (x; the first seed's for random) against each measured neuron's ablation effect
    (y), one panel per criterion, titled with Spearman's rho and its 95% interval."""
    names = list(scores)
    columns = min(4, len(names))
    rows = math.ceil(len(names) / columns)

    def title(name: str) -> str:
        rho = correlations[name]
        if math.isnan(rho.spearman):
            return f"{plotly_text(name)}<br>ρ undefined"
        return f"{plotly_text(name)}<br>ρ {rho.spearman:+.3f} [{rho.ci_low:+.2f}, {rho.ci_high:+.2f}]"

    figure = make_subplots(rows=rows, cols=columns, subplot_titles=[title(name) for name in names],
                           horizontal_spacing=0.05, vertical_spacing=0.16)
    for index, name in enumerate(names):
        figure.add_trace(go.Scattergl(
            x=scores[name][0][neurons], y=delta_loss, mode="markers", showlegend=False, customdata=neurons,
            marker=dict(size=4, color="#2a6f97", opacity=0.6),
            hovertemplate="neuron %{customdata}<br>score %{x:.4g}<br>Δ loss %{y:+.5f}<extra></extra>"),
            row=index // columns + 1, col=index % columns + 1)
    figure.update_yaxes(title_text="Δ val loss when removed", col=1)
    figure.update_layout(height=270 * rows + 40, margin=dict(l=10, r=10, t=50, b=10))
    figure.update_annotations(font_size=12)
    return figure


def zero_shot_figure(curve) -> go.Figure:
    """Validation accuracy before any fine-tuning against keep ratio, a line per criterion, with the random
    criterion as a band over its seeds (min to max, mean dashed) and the unpruned accuracy as a line."""
    figure = go.Figure()
    ratios = curve.keep_ratios
    if "random" in curve.accuracy:
        mean, low, high = curve.band("random")
        figure.add_trace(go.Scatter(x=ratios, y=100 * high, mode="lines", line=dict(width=0), showlegend=False,
                                    hoverinfo="skip"))
        figure.add_trace(go.Scatter(x=ratios, y=100 * low, mode="lines", line=dict(width=0), fill="tonexty",
                                    fillcolor="rgba(136, 136, 136, 0.25)",
                                    name=f"random ({len(curve.accuracy['random'])} seeds, min-max)"))
        figure.add_trace(go.Scatter(x=ratios, y=100 * mean, mode="lines", line=dict(color="#777", dash="dash"),
                                    name="random (mean)"))
    palette = px.colors.qualitative.D3
    for index, (name, rows) in enumerate((n, r) for n, r in curve.accuracy.items() if n != "random"):
        figure.add_trace(go.Scatter(x=ratios, y=100 * rows[0], mode="lines+markers", name=plotly_text(name),
                                    line=dict(color=palette[index % len(palette)],
                                              width=3 if name == "eigenvector" else 1.5)))
    figure.add_hline(y=100 * curve.full_acc, line=dict(color="#444", dash="dot"), annotation_text="unpruned")
    figure.update_layout(height=420, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="keep ratio",
                         yaxis_title="validation accuracy (%), no fine-tuning", legend=dict(font_size=11))
    return figure


def atlas_heatmap(labels: list[str], layers: list[str], criteria: list[str], values: np.ndarray,
                  significant: np.ndarray, hover: np.ndarray, limit: float, digits: int, title: str) -> go.Figure:
    """The atlas as a heatmap: a row per layer (``labels``, in network order, first at the top), a column per
    criterion, coloured by ``values`` from -limit (red: worse than random) to +limit (blue: better); a cell whose
    test survives the correction is written bold with a star. Each cell is also an invisible point carrying
    (layer, criterion) as customdata and its ``hover`` text (Plotly markup allowed: the caller escapes what it
    quotes); clicking anywhere selects the nearest cell. ``title`` names the colour bar's quantity, above it."""
    text = np.vectorize(lambda value, star: "" if math.isnan(value) else
                        f"<b>{value:+.{digits}f}*</b>" if star else f"{value:+.{digits}f}", otypes=[str])(
        values, significant)
    labels = [plotly_text(label) for label in labels]
    figure = go.Figure(go.Heatmap(z=values, x=criteria, y=labels, colorscale="RdBu", zmin=-limit, zmax=limit,
                                  text=text, texttemplate="%{text}", textfont=dict(size=11), hoverinfo="skip",
                                  xgap=1, ygap=1, colorbar=dict(thickness=10)))
    rows, columns = np.indices(values.shape)
    figure.add_trace(go.Scatter(
        x=[criteria[c] for c in columns.ravel()], y=[labels[r] for r in rows.ravel()], mode="markers",
        marker=dict(symbol="square-open", size=22, color="#111", opacity=0, line=dict(width=3)),
        selected=dict(marker=dict(opacity=1)), unselected=dict(marker=dict(opacity=0)),
        customdata=[[layers[r], criteria[c]] for r, c in zip(rows.ravel(), columns.ravel())],
        hovertext=hover.ravel(), hovertemplate="%{hovertext}<extra></extra>", showlegend=False))
    # The colour's quantity as the figure's title, above the criteria (a colour bar's title was cut off).
    figure.update_layout(height=26 * len(labels) + 150, margin=dict(l=10, r=10, t=90, b=10), hovermode="closest",
                         hoverdistance=-1, plot_bgcolor="#ffffff", dragmode=False,
                         title=dict(text=plotly_text(title), x=0.01, xanchor="left", y=0.99, yanchor="top",
                                    font=dict(size=13)))
    figure.update_xaxes(side="top", showgrid=False)
    figure.update_yaxes(autorange="reversed", showgrid=False, tickfont=dict(size=11))
    return figure


def spectral_depth(summary: pd.DataFrame) -> go.Figure:
    """The spectral columns of the layer-wise table across depth (network order): alpha of the trained weights
    and of the same weights shuffled (above), stable rank (below); a layer with no fit is a gap."""
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06, row_heights=[0.6, 0.4])
    summary = summary.assign(layer=summary["layer"].map(plotly_text))
    hover = summary[["layer"]]
    for column, name, color, dash in (("alpha", "alpha (trained)", "#2a6f97", None),
                                      ("alpha_shuffled", "alpha (entries shuffled)", "#8a939c", "dot"),
                                      ("alpha_mid", "alpha_mid (xmin at the median)", "#e07a5f", "dash")):
        figure.add_trace(go.Scatter(x=summary["layer"], y=summary[column], mode="lines+markers", name=name,
                                    line=dict(color=color, dash=dash), customdata=hover,
                                    hovertemplate="%{customdata[0]}<br>" + name + " %{y:.2f}<extra></extra>"),
                         row=1, col=1)
    figure.add_trace(go.Scatter(x=summary["layer"], y=summary["stable_rank"], mode="lines+markers", name="stable rank",
                                line=dict(color="#81b29a"), customdata=hover,
                                hovertemplate="%{customdata[0]}<br>stable rank %{y:.1f}<extra></extra>"), row=2, col=1)
    figure.update_yaxes(title_text="tail exponent alpha", row=1, col=1)
    figure.update_yaxes(title_text="stable rank", row=2, col=1)
    figure.update_xaxes(tickangle=-60, row=2, col=1)
    figure.update_layout(height=520, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=1.06))
    return figure


def esd_loglog(esds: dict[str, np.ndarray], fits: dict[str, tuple[float, float, int]], bins: int = 40) -> go.Figure:
    """Empirical spectral densities on log-log axes: each of ``esds`` (name -> eigenvalues) as a density over
    log-spaced bins, and each of ``fits`` (name -> (alpha, xmin, tail size)) as its power law over the tail,
    scaled to the tail's share of that ESD's eigenvalues. Zero eigenvalues are left out (no place on a log axis)."""
    figure = go.Figure()
    colours = {name: colour for name, colour in zip(esds, ("#2a6f97", "#8a939c", "#e07a5f"))}
    for name, values in esds.items():
        positive = values[values > 0]
        if len(positive) == 0:
            continue
        edges = np.geomspace(positive.min(), positive.max() * (1 + 1e-9), bins + 1)
        counts, _ = np.histogram(positive, edges)
        density = counts / (len(values) * np.diff(edges))
        centres = np.sqrt(edges[:-1] * edges[1:])
        shown = counts > 0
        figure.add_trace(go.Scatter(x=centres[shown], y=density[shown], mode="markers", name=f"ESD, {name}",
                                    marker=dict(color=colours[name], size=7)))
        if name in fits:
            alpha, xmin, tail = fits[name]
            x = np.geomspace(xmin, positive.max(), 50)
            line = tail / len(values) * (alpha - 1) / xmin * (x / xmin) ** -alpha
            figure.add_trace(go.Scatter(x=x, y=line, mode="lines", name=f"power law, {name}: alpha {alpha:.2f}",
                                        line=dict(color=colours[name], dash="dash" if name != next(iter(esds)) else None)))
            figure.add_vline(x=xmin, line=dict(color=colours[name], width=1, dash="dot"))
    figure.update_xaxes(**LOG_AXIS, title_text="eigenvalue of WᵀW (squared singular value)")
    figure.update_yaxes(**LOG_AXIS, title_text="density")
    figure.update_layout(height=420, margin=dict(l=10, r=10, t=30, b=10), legend=dict(font_size=11))
    return figure
