"""The atlas on the Layer-wise page: the recorded runs a visitor may see, one run as an interactive heatmap,
a clicked cell's numbers and where it leads, and launching a new atlas in the run queue.

Whose runs: what the visitor's access sees (``AtlasRecords.runs(access=...)``: the command line's, shared, and
their own); a
run launched here is the visitor's. A clicked cell offers its layer on "Does centrality predict importance?"
(with the atlas's dataset and image size) and in the explorer: either makes it the shared layer (the URL's).
"""
from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np

import streamlit as st

from cprune_core import CRITERIA, CPruneError, DATASETS
from cprune_core.atlas import (DEFAULT_SAMPLE, TIED_FLAG, AtlasRecords, AtlasResult, AtlasSettings, RecordedAtlas, atlas_sentences,
                               plan_layers)
from cprune_core.atlas import run_atlas
from cprune_core.access import Access
from cprune_core.data.roots import is_inside
from cprune_core.atlas.report import HeatmapPanel, heatmap_criteria, heatmap_panels
from cprune_core.experiment.importance_report import dataset_label, importance_config
from cprune_server import VisitorView, data_roots

from . import charts, forms, launches, state
from .cache import ModelBundle, ModelKey
from .services import run_queue
from .text import plain

__all__ = ["KIND", "APP_SETTINGS", "visible_runs", "read_run", "run_label", "show_run", "cell_route", "open_cell",
           "opened_page", "launch_form", "draw_launches"]

KIND = "atlas"  # the Layer-wise page's launches in the run queue
APP_SETTINGS = AtlasSettings.quick()  # the app's default: the command line's --quick (minutes on a CPU)
PAGES = {"importance": "pages/importance.py", "explorer": "pages/explorer.py"}


def _modified_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:  # removed since it was listed
        return -1


@st.cache_data(max_entries=32, show_spinner=False)
def _runs(folder: str, backbone: str, access: Access, files: tuple[tuple[str, int], ...]) -> list[RecordedAtlas]:
    """``AtlasRecords(folder).runs``; ``files`` (each run file's path and modification time) is the cache key."""
    return AtlasRecords(folder).runs(backbone, access)


def visible_runs(key: ModelKey, access: Access) -> list[RecordedAtlas]:
    """The atlas runs of the loaded backbone and weights that ``access`` sees: the reference runs shipped with
    CPrune first, then the recorded ones (a visitor: the command line's and their own), newest first; the records
    are read again only when a file of them changed, not at every rerun of the page."""
    records = AtlasRecords()
    files = tuple((str(path), _modified_ns(path)) for path in records.run_files())
    return [entry for entry in _runs(str(records.folder), key.backbone, access, files)
            if entry.config.weights == key.weights and (entry.config.checkpoint or "") == key.checkpoint]


@st.cache_data(max_entries=8, show_spinner=False)
def _read(entry: RecordedAtlas, modified_ns: int) -> AtlasResult | None:
    return AtlasRecords().read(entry)


def read_run(entry: RecordedAtlas) -> AtlasResult | None:
    """The run ``entry`` lists, read once per change of its file (None when it went or was damaged since)."""
    try:
        modified = entry.path.stat().st_mtime_ns
    except OSError:
        return None
    return _read(entry, modified)


def run_label(entry: RecordedAtlas) -> str:
    """A recorded run in words: its data, image size, settings, whose and when."""
    settings, config = entry.settings, entry.config
    sample = f"up to {DEFAULT_SAMPLE} neurons" if settings.sample_size is None else f"{settings.sample_size} neurons"
    images = "every validation image" if settings.val_images is None else f"{settings.val_images} images"
    whose = ("reference (docs/atlas.md)" if entry.reference else "shared (command line)" if entry.owner is None
             else "yours")
    when = datetime.fromtimestamp(entry.created).strftime("%d %b %H:%M")
    return (f"{dataset_label(config)}, {config.image_size} px · {entry.layers} layers, {sample}, {images}, "
            f"{settings.heads} heads, up to {settings.seeds} random kept sets, τ {settings.tau:g} · {whose} · {when}")


def _settings_text(result: AtlasResult) -> str:
    """Which settings the run used, in one paragraph."""
    settings, config, baseline = result.settings, result.config, result.baseline
    sample = (f"{settings.sample_size} neurons of each layer" if settings.sample_size is not None
              else f"up to {DEFAULT_SAMPLE} neurons of each layer (all of a smaller one)")
    images = result.layers[0].result.n_images if result.layers else settings.val_images
    scope = ("all" if len(result.layers) == result.prunable_layers else
             f"{len(result.layers)} of the {result.prunable_layers}" +
             (" (spread over the network)" if settings.layers is None else ""))
    return (f"Measured on {dataset_label(config)} at {config.image_size} px, with a head trained for {config.epochs} "
            f"epochs on the frozen backbone (validation accuracy {100 * (baseline.val_acc or 0):.1f}%): {scope} "
            f"prunable layers; {sample} removed one at a time (every neuron of a layer the classifier reads through "
            f"pooling), on {images} validation images, averaged over {settings.heads} heads; group ablation keeping "
            f"{' and '.join(f'{k:.0%}' for k in settings.keep_ratios)} against up to {settings.seeds} random kept "
            f"sets; τ {settings.tau:g}; {settings.permutations:,} permutations. {result.elapsed_s / 60:.1f} minutes on "
            f"{result.device or 'this server'}.")


def _hover(result: AtlasResult, panel: HeatmapPanel, criteria: list[str]) -> np.ndarray:
    """Each cell's hover text: layer, criterion, the value and its test, what the layer's test could detect (the
    effects' reliability and the ceiling it puts on rho, the minimum detectable rho), and ties at the cut."""
    def text(row: int, column: int) -> str:
        layer, value = result.layers[row], panel.values[row, column]
        reliability = layer.reliability
        name = charts.plotly_text(criteria[column])  # hover text is Plotly markup: names escaped
        lines = [f"<b>{charts.plotly_text(layer.label)}</b>",
                 f"{name}: {value:+.{panel.digits}f}" if not math.isnan(value) else f"{name}: undefined"]
        if not math.isnan(panel.p[row, column]):
            lines.append(f"p {panel.p[row, column]:.3g}, Holm-adjusted {panel.adjusted[row, column]:.3g}: "
                         f"{panel.verdicts[row][column]}")
        lines.append(f"effects' reliability {reliability.full:.2f} (no rho above {reliability.ceiling:.2f}); the rho "
                     f"test detects |rho| ≥ {result.minimum_detectable_rho(layer):.2f}")
        if panel.tied[row, column] > TIED_FLAG:
            lines.append(f"ties decided {panel.tied[row, column]:.0%} of the kept set (averaged over tie-breaks)")
        return "<br>".join(lines + ["click: open this layer"])

    return np.array([[text(r, c) for c in range(len(criteria))] for r in range(len(result.layers))], dtype=object)


def _cell(event) -> tuple[str, str] | None:
    """(layer, criterion) of the clicked cell, or None."""
    points = (event or {}).get("selection", {}).get("points", [])  # a dict, with attribute access in a live app
    data = points[0].get("customdata") if points else None
    return (str(data[0]), str(data[1])) if data and len(data) == 2 else None


def show_run(result: AtlasResult) -> tuple[str, str] | None:
    """The run's finding, its heatmap (a choice of colouring) and its settings; the clicked cell, if any."""
    finding, layers, why = atlas_sentences(result)
    st.markdown(plain(finding))
    st.caption(plain(layers))
    panels = heatmap_panels(result)
    titles = [panel.title.replace("\n", " ") for panel in panels]
    chosen = st.radio("Colour by", range(len(panels)), format_func=titles.__getitem__, horizontal=True,
                      key="atlas_colour")
    panel, criteria = panels[chosen], heatmap_criteria(result)
    figure = charts.atlas_heatmap([layer.label for layer in result.layers], [layer.layer for layer in result.layers],
                                  criteria, panel.values, panel.significant, _hover(result, panel, criteria),
                                  panel.limit, panel.digits, titles[chosen])
    event = st.plotly_chart(figure, key="atlas_heatmap", on_select="rerun", selection_mode="points",
                            config=state.chart_config(f"atlas-{result.config.backbone}"))
    st.caption("Rows: depth among the network's layers, layer (kind, neurons), in network order; columns: criteria. "
               "Blue: the criterion does better than random pruning there; red: worse. **Bold with a star**: the "
               "layer's test survives Holm's correction over layers at 5%; † ties decided more than a quarter of "
               "the kept set. Click a cell to open its layer.")
    if why:
        st.caption(plain(why))
    st.caption(plain(_settings_text(result)))
    return _cell(event)


def cell_route(result: AtlasResult, layer: str, criterion: str) -> dict[str, object]:
    """What opening a cell sets, by session-state name: the shared layer and criterion (the URL's ``layer`` and
    ``criterion``), and the "Does centrality predict importance?" page's layer, dataset, its folder (when
    visitors may use it) and image size, as the atlas measured them."""
    config = result.config
    route: dict[str, object] = {"layer": layer, "imp_layer": layer}
    if criterion in CRITERIA:
        route["criterion"] = criterion
    if config.dataset in DATASETS:
        route["dataset"] = config.dataset
        if config.dataset_root and DATASETS[config.dataset].default_root is None and \
                is_inside(config.dataset_root, data_roots()):
            route["imp_root"] = config.dataset_root
    if config.image_size:
        route["imp_image_size"] = config.image_size
    return route


def open_cell(route: dict[str, object], page: str) -> None:
    """A button's callback: set what ``route`` says and switch to ``page`` (a key of PAGES) at the next line
    of the page script (``st.switch_page`` cannot run in a callback)."""
    for name, value in route.items():
        if name in state.DEFAULTS:
            state.set_value(name, value)
        else:
            st.session_state[name] = value
    st.session_state["atlas_open"] = PAGES[page]


def _form_settings(bundle: ModelBundle) -> tuple[AtlasSettings, int]:
    """The launch form's inputs: the settings (the app's defaults: APP_SETTINGS; the limits and help: the fields',
    ui.forms) and the image size."""
    quick, spec = APP_SETTINGS, bundle.loaded.spec
    total = len(bundle.graph.groups)
    cells = st.columns(6)
    layers = cells[0].selectbox("Layers", [quick.quick_layers, 0], key="atlas_layers",
                                format_func=lambda n: f"{n}, spread out" if n else f"all {total}",
                                help=forms.help_for(AtlasSettings, "quick_layers"))
    sample = forms.number_input_for(cells[1], "Neurons per layer", quick, "sample_size", key="atlas_sample")
    images = forms.number_input_for(cells[2], "Validation images", quick, "val_images", key="atlas_images")
    heads = forms.number_input_for(cells[3], "Heads", quick, "heads", key="atlas_heads")
    seeds = forms.number_input_for(cells[4], "Random kept sets", quick, "seeds", key="atlas_seeds")
    size = launches.image_size_select(cells[5], spec, key="atlas_image_size")
    settings = replace(quick, quick_layers=int(layers), sample_size=sample, val_images=images, heads=heads,
                       seeds=seeds, tau=st.session_state["tau"])
    return settings, int(size)


def _cost_caption(dataset: str, tau: float) -> str:
    """What the form's defaults and the command line's full atlas measure, and what that costs."""
    quick, full = APP_SETTINGS, AtlasSettings()
    return (f"On {dataset} (the sidebar's dataset), τ = {tau:.2f}. The defaults are the command line's "
            f"`experiment atlas --quick` ({quick.quick_layers} layers, {quick.sample_size} neurons, {quick.val_images} "
            f"images, {quick.heads} heads, {quick.seeds} random kept sets): minutes on a CPU. Each layer's cost grows "
            f"with its neurons, images and random kept sets (the command line's full atlas, every layer with up to "
            f"{DEFAULT_SAMPLE} neurons, every validation image, {full.heads} heads and up to {full.seeds} random kept "
            "sets, takes hours on a 2-core CPU: docs/benchmarks.md). A stopped atlas keeps the layers it measured: the "
            "same settings resume from them.")


def launch_form(key: ModelKey, bundle: ModelBundle) -> None:
    """Settings and a button that queue an atlas of the loaded model on the sidebar's dataset, as this visitor's."""
    settings, image_size = _form_settings(bundle)
    dataset = st.session_state["dataset"]
    root = launches.dataset_folder_input(dataset, key="atlas_root")
    st.caption(_cost_caption(dataset, settings.tau))
    if not st.button("Measure the atlas", type="primary", key="atlas_start"):
        return
    try:
        launches.check_dataset_folder(dataset, root)
        config = replace(importance_config(backbone=key.backbone, dataset=dataset, root=root or None,
                                           image_size=image_size), weights=key.weights, checkpoint=key.checkpoint or None)
        config.validate()
        planned = plan_layers(bundle.loaded.model, bundle.loaded.spec, settings.validate(app=True), bundle.graph)
        access = state.access()
        submitted = run_queue().submit_task(access.owner, f"Atlas of {len(planned)} layers on {dataset}",
                                            lambda stop, progress: run_atlas(config, settings, records=AtlasRecords(),
                                                                             progress=progress, stop=stop,
                                                                             access=access), kind=KIND)
        launches.hold_checkpoint(key, submitted)
    except CPruneError as exc:
        st.error(plain(exc))


def draw_launches(view: VisitorView) -> None:
    """This visitor's atlas launches that wait or run, and the newest that ended."""
    launches.task_launches(view, KIND, "atlas", lambda result: st.success("Measured and recorded: it is the newest "
                                                                          "run above."))


def opened_page() -> str | None:
    """The page a clicked cell's button asked for (once)."""
    return st.session_state.pop("atlas_open", None)
