"""``graph``: a layer's neuron-similarity graph and every criterion's score per neuron, from a backbone or
any weights file; or the layer-wise table of the whole model."""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import networkx as nx
import pandas as pd

from ..graph import GRAPH_FORMATS, graph_file, to_networkx
from ..graph_cache import GraphCache
from ..layer_view import TAU_STEPS, scan_layer, suggested_tau
from ..layer_report import (LAYERWISE_COLUMNS, LayerReport, SourceOpener, check_graph_settings,
                            layer_report, layerwise_rows)
from ..model_source import FileSource, ModelSource
from ..paths import atomic_write, writable_dir
from ..errors import ConfigError
from ..weights import printable
from .options import make_executor
from .progress_bars import StepProgressBar

__all__ = ["graph_command"]


def file_stem(layer: str) -> str:
    """A layer name as a file name inside the output folder: "features.0" stays, "onnx::Conv_12" becomes
    "onnx__Conv_12", leading dots go (no hidden file, never "." or ".."), at most 120 characters. ConfigError
    for a name that leaves nothing ("." or "..")."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", layer).lstrip(".")[:120]
    if not stem:
        raise ConfigError(f"The layer name {layer!r} makes no file name (it is only dots): "
                          "use --layer all for the layer-wise table, or rename the tensor.")
    return stem


def print_layers(source: ModelSource) -> None:
    """The layer list (names printable: control characters escaped), the tensors that are no layer with why,
    and for a file the backbones whose checkpoint it is."""
    width = max(len("layer"), *(len(info.name) for info in source.layers))
    kind_width = max(len(info.kind) for info in source.layers)
    print(f"{printable(source.title)}: {len(source.layers)} layers")
    print(f"{'layer':<{width}}  {'kind':<{kind_width}}  {'neurons':>7}  {'vector':>7}  note")
    for info in source.layers:
        print(f"{printable(info.name):<{width}}  {info.kind:<{kind_width}}  {info.neurons:>7}  "
              f"{info.vector_length:>7}  {printable(info.note)}")
    if isinstance(source, FileSource):
        if source.skipped:
            print(f"not layers ({len(source.skipped)}):")
            for name, why in source.skipped:
                print(f"  {printable(name)}: {printable(why)}")
        print(f"checkpoint of: {', '.join(source.fits) or 'no registry backbone'}")
    print("Choose a layer with --layer NAME, or --layer all for the layer-wise table.")


def write_layer(report: LayerReport, out: Path, file_format: str) -> list[Path]:
    """The layer's graph in ``file_format``: one GraphML/GEXF file, or node and edge CSV files."""
    stem = file_stem(report.layer)
    if file_format in GRAPH_FORMATS:
        path = out / f"{stem}.{file_format}"
        contents = graph_file(report.adjacency, report.node_values(), file_format)
        atomic_write(path, lambda temporary: Path(temporary).write_bytes(contents))
        return [path]
    nodes, edges = out / f"{stem}.nodes.csv", out / f"{stem}.edges.csv"
    # to_networkx refuses graphs networkx cannot hold, as graph_file does.
    table = nx.to_pandas_edgelist(to_networkx(report.adjacency)).reindex(columns=["source", "target", "weight"])
    node_table = pd.DataFrame({"neuron": range(report.summary.nodes), **report.node_values()})
    atomic_write(nodes, lambda temporary: node_table.to_csv(temporary, index=False))
    atomic_write(edges, lambda temporary: table.to_csv(temporary, index=False))
    return [nodes, edges]


def no_edge_hint(source: ModelSource, layer: str, tau: float) -> str:
    """Why a layer's graph has no edge at ``tau``, and the tau at which its neurons have about ten edges each
    (``layer_view.suggested_tau``): what the app's explorer says, for the command line."""
    scan = scan_layer(source, layer, taus=TAU_STEPS, edge_cap=1)  # the counts, in the graph budget
    suggested = suggested_tau(TAU_STEPS, scan.counts, scan.neurons)
    return (f"hint: no two neurons of {printable(layer)} have a cosine similarity above tau {tau:g} (random-init "
            f"weights have similarities near 0); at --tau {suggested:.2f} each neuron has about ten edges.")


def opener(args: argparse.Namespace) -> SourceOpener:
    """How this command's model is opened, here and in a Ray worker."""
    if args.weights is not None:
        return SourceOpener(weights=args.weights)
    return SourceOpener(backbone=args.backbone, backbone_weights=args.backbone_weights)


def open_source(args: argparse.Namespace) -> ModelSource:
    return opener(args)()


def graph_command(args: argparse.Namespace) -> int:
    check_graph_settings(args.tau, args.criteria)  # before a model is opened
    executor = make_executor(args)  # its resources checked before any work; a cluster joined only for --layer all
    source = open_source(args)
    if args.layer is None:
        print_layers(source)
        return 0
    out = writable_dir(args.out, "--out")
    bar = LaterBar()
    try:
        if args.layer == "all":
            return write_table(source, args, executor, out, bar)
        report = layer_report(source, args.layer, args.tau, args.criteria, progress=bar)
    finally:
        bar.close()
    paths = write_layer(report, out, args.format)
    summary = report.summary
    print(f"{printable(source.title)}, layer {printable(args.layer)} at tau {args.tau:g}: {summary.nodes} neurons, "
          f"{summary.edges} edges (density {summary.density:.4f}), {summary.components} "
          f"component{'s' if summary.components != 1 else ''}; "
          f"scores: {', '.join(report.scores)} -> {', '.join(printable(str(path)) for path in paths)}")
    if summary.edges == 0 and summary.nodes > 1:
        print(no_edge_hint(source, args.layer, args.tau), file=sys.stderr)
    for criterion, note in report.notes.items():
        others = [name for name in args.criteria if name != criterion]
        print(f"warning: {note}; --criteria {','.join(others)} leaves it out", file=sys.stderr)
    return 0


class LaterBar:
    """The step progress bar (``progress(done, total, message)``), shown once the work has taken a second: a small
    layer's graph prints its result alone."""

    def __init__(self, after_s: float = 1.0):
        self.shown_from = time.monotonic() + after_s
        self.bar = StepProgressBar()

    def __call__(self, done: int, total: int, message: str) -> None:
        if time.monotonic() >= self.shown_from:
            self.bar(done, total, printable(message))

    def close(self) -> None:
        self.bar.close()


def write_table(source: ModelSource, args: argparse.Namespace, executor, out: Path, bar: LaterBar) -> int:
    """The layer-wise table, one task per layer on ``executor``, each row recorded as it ends (resumable)."""
    path = out / "layerwise.csv"
    with executor:
        where = executor.describe()  # while connected: a Ray started here is shut down as the block ends
        rows = layerwise_rows(source, args.tau, executor=executor, reopen=opener(args), records=GraphCache(),
                              progress=bar)
    table = pd.DataFrame(rows, columns=LAYERWISE_COLUMNS)
    atomic_write(path, lambda temporary: table.to_csv(temporary, index=False))
    bar.close()
    print(f"{printable(source.title)}: {len(source.graph_layers)} layers at tau {args.tau:g} ({where}) "
          f"-> {printable(str(path))}")
    return 0
