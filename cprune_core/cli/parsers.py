"""Every command's parser, and nothing that runs a command: building them imports no torch, pandas or scipy, so
``cprune COMMAND --help`` answers at once. Each command's work lives in its module of this package (``graph``,
``finetune``, ...), imported when the command runs (``Handler``). The options come from the settings classes
(``FinetuneConfig``, ``AnalysisConfig``, ``AtlasSettings``) and the names of ``ranges``, ``registry`` and
``experiment.settings``: the one source of the names, defaults, choices and ranges the work checks again."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from importlib import import_module

from ..ablation.config import AnalysisConfig
from ..atlas.settings import AtlasSettings
from ..experiment.settings import (DEFAULT_EPOCHS, DEFAULT_IMAGE_SIZE, FULL_BACKBONES, QUICK_ALLOCATION, QUICK_ANALYSIS,
                                   QUICK_EPOCHS, QUICK_SEEDS, REGIMES, REMOVED)
from ..ranges import CRITERION_NAMES, DEFAULT_SEEDS, GRAPH_FORMATS, MAX_GRAPH_NEURONS
from ..registry import BACKBONES
from ..schema import FinetuneConfig
from ..weights.budget import LOCAL_BUDGET
from .options import (add_analysis_data_options, add_config_argument, add_executor_options, add_settings_options,
                      comma_floats, comma_list, name_text, out_help, path_text, whole_number)

__all__ = ["Handler", "EXPORT_FORMATS", "GRAPH_FILE_FORMATS", "add_finetune", "add_evaluate", "add_graph",
           "add_experiment", "add_importance", "add_atlas", "add_tolerance", "add_allocation"]

EXPORT_FORMATS = ("onnx", "torchscript")  # finetune --export: the saved model also as DIR/model.onnx or DIR/model.ts
GRAPH_FILE_FORMATS = (*GRAPH_FORMATS, "csv")  # graph --format


@dataclass(frozen=True)
class Handler:
    """A command's function, ``function`` of the module ``module`` of this package, imported when the command runs:
    ``args.handler(args)`` runs it and returns its exit code."""

    module: str
    function: str

    def __call__(self, args: argparse.Namespace) -> int:
        return getattr(import_module(f".{self.module}", __package__), self.function)(args)


def add_finetune(subparsers, command) -> None:
    parser = subparsers.add_parser(
        command.name, help=command.help,
        description="Fine-tune a backbone on an image-classification dataset: the conventional baseline "
                    "(frozen backbone + new head), prune-then-fine-tune, or fine-tune without pruning. "
                    "Prints progress, then a summary (or JSON with --json).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_settings_options(parser, FinetuneConfig)
    parser.add_argument("--baseline", action="store_true", help="Shorthand for --mode baseline.")
    output = parser.add_argument_group("output")
    output.add_argument("--save", metavar="DIR", type=path_text,
                        help="Save the fine-tuned model (model.pt + model.json) in DIR.")
    output.add_argument("--export", action="append", choices=EXPORT_FORMATS, default=[],
                        help="Also export the saved model to DIR/model.onnx or DIR/model.ts "
                             "(repeatable; needs --save).")
    output.add_argument("--no-record", action="store_true", help="Do not record the run in the run store.")
    output.add_argument("--store", metavar="FILE", type=path_text,
                        help="Run store file; none: $CPRUNE_HOME/runs.sqlite, else ~/.cache/cprune/runs.sqlite.")
    output.add_argument("--json", action="store_true", help="Print the final figures as JSON on stdout.")
    output.add_argument("--quiet", action="store_true", help="No progress bar.")
    parser.set_defaults(handler=Handler("finetune", "finetune_command"))


def add_evaluate(subparsers, command) -> None:
    parser = subparsers.add_parser(
        command.name, help=command.help,
        description="Load a model directory written by `finetune --save` and measure its accuracy on a "
                    "dataset. Classes are matched by name; every class of the data must be a class of the model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", required=True, metavar="DIR", type=path_text,
                        help="Saved model directory (model.json + model.pt).")
    add_config_argument(parser, "dataset", default="folder",
                        help="Dataset; 'folder' is any folder with one sub-folder of images per class.")
    add_config_argument(parser, "dataset_root", help="Dataset folder (required for 'folder').")
    parser.add_argument("--split", default="all", choices=("all", "train", "val", "test"),
                        help="Which images: all, or one split made with --seed and the default fractions.")
    add_config_argument(parser, "seed", help="Seed of the split (with --split train/val/test).")
    add_config_argument(parser, "batch_size", default=64, help="Evaluation batch size.")
    add_config_argument(parser, "device")
    parser.add_argument("--json", action="store_true", help="Print the accuracies as JSON on stdout.")
    parser.add_argument("--quiet", action="store_true", help="No progress bar (on stderr: images evaluated).")
    parser.set_defaults(handler=Handler("evaluate", "evaluate_command"))


def add_graph(subparsers, command) -> None:
    parser = subparsers.add_parser(
        command.name, help=command.help,
        description="Build the neuron-similarity graph of one layer at tau and score its neurons by every "
                    "criterion; write it as GraphML or GEXF (scores as node attributes, for Gephi, Cytoscape or "
                    "networkx) or as CSV (LAYER.nodes.csv and LAYER.edges.csv). With --layer all, write the "
                    "layer-wise table (edges, density, components, centrality concentration, and the data-free "
                    "spectral figures: the power-law exponent alpha of the weights' eigenvalue tail with its fit, "
                    "alpha of the same weights shuffled, stable rank, spectral norm, per layer) as "
                    "layerwise.csv. Without --layer, list the layers and the tensors that are none, with why. In "
                    "a model's weights every float tensor of rank 2 to 5 with two neurons or more is a layer; "
                    f"files of any size are listed from their headers, layers of up to "
                    f"{LOCAL_BUDGET.max_tensor_elements:,} elements read (only their own bytes), graphs built for "
                    f"layers of up to {MAX_GRAPH_NEURONS:,} neurons, a block of rows at a time within "
                    "CPRUNE_GRAPH_MEMORY_MB, with a progress bar on stderr. --layer all runs one task per layer, "
                    "here or on a Ray cluster (--executor ray), and keeps each layer's row as it ends "
                    "($CPRUNE_HOME/graphs): a table stopped midway resumes with the layers left.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", metavar="PATH", type=path_text,
                        help="A .safetensors file, an .onnx model, a PyTorch state dict (.pt, .pth, .bin; read with "
                             "weights_only=True), a checkpoint's index (model.safetensors.index.json, its shards "
                             "beside it) or a folder holding one of these.")
    add_config_argument(source, "backbone", default=None)
    parser.add_argument("--backbone-weights", choices=("pretrained", "random"), default="pretrained",
                        help="With --backbone: ImageNet-pretrained or random-init weights.")
    parser.add_argument("--layer", metavar="NAME", type=name_text, help="The layer (as listed without --layer), or 'all' for the "
                                                        "layer-wise table.")
    add_config_argument(parser, "tau")
    parser.add_argument("--criteria", type=comma_list, default=list(CRITERION_NAMES), metavar="NAMES",
                        help=f"Comma-separated criteria to score neurons by; choose from {', '.join(CRITERION_NAMES)}.")
    parser.add_argument("--out", default=".", metavar="DIR", type=path_text, help="Folder for the files written.")
    parser.add_argument("--format", choices=GRAPH_FILE_FORMATS, default="graphml",
                        help="File format of one layer's graph (the layer-wise table is always CSV).")
    add_executor_options(parser, "layer", "--layer all's layers one after another in this process",
                         "--layer all's layers each one Ray task")
    parser.set_defaults(handler=Handler("graph", "graph_command"), device="cpu")


def add_experiment(subparsers, command) -> None:
    experiments = subparsers.add_parser(
        command.name, help=command.help,
        description="Each experiment writes a generated report (Markdown, CSV and PNG) in --out; "
                    "`experiment NAME --help` lists its options.")
    names = experiments.add_subparsers(dest="name", required=True, metavar="NAME")
    parser = names.add_parser(
        "paper-table", help="Reproduce the paper's comparison as a table.",
        description="paper-table: for each backbone x dataset regime x seed, on the same split, run the conventional "
                    "baseline, fine-tuning without pruning, and prune-then-fine-tune with each criterion and keep "
                    "ratio; record every run in the store and write results.md, results.csv and results.png in --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--backbones", nargs="+", choices=list(BACKBONES), help="Backbones; default efficientnet_lite0.")
    parser.add_argument("--datasets", nargs="+", choices=list(REGIMES),
                        help="Dataset regimes; default the offline pair flowers128 and flowers128-10shot "
                             "(--quick: flowers-sample).")
    parser.add_argument("--seeds", type=whole_number, help=f"Number of seeds (0..N-1); default {DEFAULT_SEEDS} "
                                                  f"(--quick: {QUICK_SEEDS}).")
    parser.add_argument("--quick", action="store_true",
                        help=f"A reduced grid (eigenvector and random at keep 0.25 and 0.5, no tau sweep, "
                             f"{QUICK_EPOCHS} epochs) that runs in minutes on a CPU, its report not in "
                             "docs/ (see --out): for tests and for checking the set-up.")
    add_config_argument(parser, "epochs", default=None, help=f"Epochs per run; default {DEFAULT_EPOCHS} "
                                                             f"(--quick: {QUICK_EPOCHS}).")
    add_config_argument(parser, "image_size", default=DEFAULT_IMAGE_SIZE,
                        help="Input size; the flowers photos are 128 px, so larger sizes only upsample "
                             "(use 224 for the downloaded datasets).")
    add_config_argument(parser, "train_scope")
    add_config_argument(parser, "device")
    parser.add_argument("--out", type=path_text, help=out_help())
    parser.add_argument("--no-record", action="store_true",
                        help="Do not record the runs in the local run store (and so do not resume from it).")
    parser.add_argument("--rerun", action="store_true",
                        help="Run again the planned runs that already finished in the run store (by default they "
                             "are skipped and their recorded results reported, so a killed grid resumes).")
    add_executor_options(parser, "run", local="one run after another in this process",
                         ray="each run is a Ray task (as many at once as the cluster holds)")
    parser.set_defaults(handler=Handler("experiment", "run_experiment_command"))
    add_importance(names)
    add_atlas(names)
    add_tolerance(names)
    add_allocation(names)


def add_importance(experiments) -> None:
    """The ``importance`` parser under ``experiment``'s names."""
    parser = experiments.add_parser(
        "importance", help="Does centrality predict importance? Each neuron's exact ablation effect against "
                           "every criterion's score.",
        description="Train a new head once on the frozen backbone, then remove each neuron of a layer alone and "
                    "measure the change in validation loss and accuracy (no retraining): every neuron of the "
                    "backbone's head layer by one matrix operation on the cached pooled features, or a seeded "
                    "sample of another layer's neurons by a forward pass each. Reports each criterion's Spearman "
                    "correlation with that effect (95% bootstrap interval) and the zero-shot pruning curve; writes "
                    "importance.md, importance.csv and importance.png in --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_analysis_data_options(parser)
    add_config_argument(parser, "image_size", default=DEFAULT_IMAGE_SIZE,
                        help="Input size; the flowers photos are 128 px.")
    add_config_argument(parser, "device")
    quick = QUICK_ANALYSIS
    add_settings_options(parser, AnalysisConfig, quick=quick)
    parser.add_argument("--quick", action="store_true",
                        help=f"flowers-sample, {quick.seeds} seeds, {quick.resamples} bootstrap resamples (instead "
                             f"of {AnalysisConfig.resamples}), the report not in docs/ (see --out): for tests and for "
                             "checking the set-up.")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON on stdout (and nothing else).")
    parser.add_argument("--out", type=path_text, help=out_help())
    add_executor_options(parser, "task", local="in this process, with a progress bar",
                         ray="the whole analysis as one Ray task (e.g. on a GPU node), without a progress bar")
    parser.set_defaults(handler=Handler("experiment_importance", "importance_command"))


def add_atlas(experiments) -> None:
    """The ``atlas`` parser under ``experiment``'s names."""
    parser = experiments.add_parser(
        "atlas", help="Does centrality predict importance, layer by layer? Single-neuron and group ablation in "
                      "every prunable layer, against random pruning.",
        description="For each backbone: train heads on the frozen backbone (one per seed), then in every chosen layer, "
                    "with no retraining: remove each of a seeded sample of neurons alone on every validation image "
                    "(the effects' split-half reliability; Spearman rho of every criterion with them, an interval "
                    "resampling images and neurons, a permutation test), keep a fraction of the neurons by each "
                    "criterion (ranked among random kept sets) and measure the kept sets' redundancy and coverage. "
                    "The primary tests pool every layer of every backbone; per-layer tests are Holm-corrected over "
                    "each backbone's layers. Each layer is recorded as it ends, so the same command resumes. Writes "
                    "atlas.md, atlas.csv and atlas-BACKBONE.png in --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_analysis_data_options(parser, backbones=True)
    add_settings_options(parser, AtlasSettings, quick=AtlasSettings.quick())
    add_config_argument(parser, "image_size", default=DEFAULT_IMAGE_SIZE, help="Input size; the flowers photos are 128 px.")
    add_config_argument(parser, "device")
    parser.add_argument("--quick", action="store_true",
                        help="flowers-sample, a few layers, small samples: minutes on a CPU, for tests and for "
                             "checking the set-up; the report is not written in docs/ (see --out).")
    parser.add_argument("--json", action="store_true", help="Print the atlas as JSON on stdout (and nothing else).")
    parser.add_argument("--out", type=path_text, help=out_help())
    parser.add_argument("--rerun", action="store_true",
                        help="Measure again the layers already recorded with the same settings (by default they are "
                             "read back, so a killed run resumes).")
    parser.add_argument("--no-record", action="store_true",
                        help="Do not record the layers (and so do not resume from earlier records).")
    add_executor_options(parser, "task", local="the layers one after another in this process",
                         ray="each layer is a Ray task (as many at once as the cluster holds)")
    parser.set_defaults(handler=Handler("experiment_atlas", "atlas_command"))


def add_tolerance(experiments) -> None:
    """The ``tolerance`` parser under ``experiment``'s names."""
    parser = experiments.add_parser(
        "tolerance", help="Does alpha, stable rank or centrality's concentration predict how much a layer can lose? "
                          "From the recorded atlas, no training.",
        description="For every layer the atlas measured (per backbone, its largest recorded run: docs/atlas-*.json.gz "
                    "or $CPRUNE_HOME/atlas): the accuracy lost with half and three quarters of the layer removed, at "
                    "random and by the best criterion, against the weights' spectral figures and centrality's "
                    "concentration; Spearman rho over every layer with bootstrap intervals and permutation p-values, "
                    "Holm-corrected over the family. Writes tolerance.md, tolerance.csv and tolerance.png in --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--backbones", nargs="+", choices=list(BACKBONES), metavar="BACKBONE",
                        help=f"Backbones whose atlases are read; default {' '.join(FULL_BACKBONES)} (--quick: "
                             f"{FULL_BACKBONES[0]}).")
    parser.add_argument("--quick", action="store_true",
                        help="The first backbone only, whatever atlas is recorded (a --quick one too); the report is "
                             "not written in docs/ (see --out).")
    parser.add_argument("--out", type=path_text, help=out_help())
    parser.set_defaults(handler=Handler("experiment_allocation", "tolerance_command"))


def add_allocation(experiments) -> None:
    """The ``allocation`` parser under ``experiment``'s names."""
    parser = experiments.add_parser(
        "allocation", help="Prune the whole network to the same MACs with per-layer ratios set uniformly, by alpha "
                           "(AlphaPruning) or by the atlas's measured tolerance; fine-tune and compare over seeds.",
        description="For each backbone x dataset regime x seed: the unpruned network fine-tuned, and for each share of "
                    "the prunable MACs removed, each allocation rule (uniform, alpha, tolerance) and each criterion "
                    "within layers (eigenvector, random), the network pruned to exactly that many MACs and fine-tuned "
                    "end to end. Every run is recorded in the run store as it ends, so the same command resumes. "
                    "Writes allocation.md, allocation.csv and allocation.png in --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--backbones", nargs="+", choices=list(BACKBONES), default=[FULL_BACKBONES[0]],
                        metavar="BACKBONE", help=f"Backbones; choose from {', '.join(BACKBONES)}.")
    parser.add_argument("--datasets", nargs="+", choices=list(REGIMES),
                        help="Dataset regimes; default flowers128-full (--quick: flowers-sample).")
    parser.add_argument("--seeds", type=whole_number, help=f"Number of seeds (0..N-1); default {DEFAULT_SEEDS} "
                                                           f"(--quick: {QUICK_ALLOCATION['seeds']}).")
    parser.add_argument("--removed", type=comma_floats, metavar="SHARES",
                        help=f"Shares of the prunable MACs removed, comma-separated, each in (0, 1); default "
                             f"{','.join(f'{r:g}' for r in REMOVED)} (--quick: {QUICK_ALLOCATION['removed'][0]:g}).")
    add_config_argument(parser, "epochs", default=None, help=f"Epochs per run; default {DEFAULT_EPOCHS} "
                                                             f"(--quick: {QUICK_ALLOCATION['epochs']}).")
    add_config_argument(parser, "image_size", default=None, help=f"Input size; default {DEFAULT_IMAGE_SIZE} (the "
                                                                 f"flowers photos' size; --quick: {QUICK_ALLOCATION['image_size']}).")
    add_config_argument(parser, "device")
    parser.add_argument("--quick", action="store_true",
                        help="flowers-sample, 2 seeds, 1 epoch at 64 px, half the MACs removed: minutes on a CPU, "
                             "for tests and for checking the set-up; the report is not written in docs/.")
    parser.add_argument("--out", type=path_text, help=out_help())
    parser.add_argument("--no-record", action="store_true",
                        help="Do not record the runs in the run store (and so do not resume from it).")
    parser.add_argument("--rerun", action="store_true",
                        help="Run again the planned runs that already finished in the run store.")
    add_executor_options(parser, "run", local="one run after another in this process",
                         ray="each run is a Ray task (as many at once as the cluster holds)")
    parser.set_defaults(handler=Handler("experiment_allocation", "allocation_command"))
