"""``experiment atlas``: does centrality predict importance, in every prunable layer? A generated report, or JSON."""
from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import replace

from ..atlas import AtlasRecords, AtlasSettings, atlas_sentences, run_atlas
from ..errors import StopRequested
from ..atlas import report as atlas_report
from ..experiment import importance_report
from ..experiment.grid import DEFAULT_IMAGE_SIZE
from ..paths import writable_dir
from ..registry import DEFAULT_BACKBONE
from .interrupt import stop_on_ctrl_c
from .options import (add_analysis_data_options, add_config_argument, add_executor_options, add_settings_options,
                      executor_flags, make_executor, out_help, path_text, report_folder, settings_flags,
                      settings_from_args)
from .progress_bars import StepProgressBar

__all__ = ["add_atlas_command"]

DEFAULTS = AtlasSettings()
QUICK = AtlasSettings.quick()


def add_atlas_command(experiments) -> None:
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
    add_settings_options(parser, AtlasSettings, quick=QUICK)
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
    parser.set_defaults(handler=atlas_command)


def _settings(args: argparse.Namespace) -> AtlasSettings:
    """The settings of the options given, on the full atlas's or --quick's; named layers are measured all, not
    spread out as --quick's (unless --quick-layers is given too)."""
    named = getattr(args, "layers", None) not in (None, ["all"]) and not hasattr(args, "quick_layers")
    return settings_from_args(args, AtlasSettings, QUICK if args.quick else DEFAULTS,
                              **({"quick_layers": 0} if named else {}))


def _command(args: argparse.Namespace) -> str:
    return " ".join(part for part in [
        "python -m cprune_core experiment atlas", "--quick" if args.quick else "",
        f"--backbones {' '.join(args.backbones)}" if args.backbones != [DEFAULT_BACKBONE] else "",
        f"--dataset {args.dataset}" if args.dataset else "", f"--root {args.dataset_root}" if args.dataset_root else "",
        *settings_flags(args, AtlasSettings),
        f"--image-size {args.image_size}" if args.image_size != DEFAULT_IMAGE_SIZE else "", *executor_flags(args),
    ] if part)


def _measure(args: argparse.Namespace, backbone: str, settings: AtlasSettings, records, executor, bar, stop):
    config = replace(importance_report.importance_config(quick=args.quick, backbone=backbone, dataset=args.dataset,
                                                         root=args.dataset_root, image_size=args.image_size,
                                                         device=args.device),
                     disk_cache=True)  # a resumed run reads the frozen features back instead of recomputing them
    def progress(done: int, total: int, message: str) -> None:
        bar(done, total, f"{backbone}: {message}")

    return run_atlas(config, settings, executor=executor, records=records, rerun=args.rerun, progress=progress,
                     stop=stop)


def atlas_command(args: argparse.Namespace) -> int:
    out = writable_dir(report_folder(args.out, args.quick), "--out")  # before hours of work whose report could not be written
    settings = _settings(args)
    records = None if args.no_record else AtlasRecords()
    bar, stop = StepProgressBar(), threading.Event()
    start = time.perf_counter()
    results = []
    with make_executor(args) as executor:
        try:
            with stop_on_ctrl_c(stop):
                for backbone in dict.fromkeys(args.backbones):
                    results.append(_measure(args, backbone, settings, records, executor, bar, stop))
        except StopRequested:  # Ctrl-C: cli.main prints one line, exit 130
            raise StopRequested("interrupted with Ctrl-C; the layers measured so far are recorded, and the same "
                                "command resumes from them." if records else "interrupted with Ctrl-C.") from None
        finally:
            bar.close()
    elapsed = time.perf_counter() - start
    paths = atlas_report.write_atlas_report(results, out, command=_command(args), elapsed_s=elapsed,
                                            device=results[0].device)
    sentences = atlas_sentences(results)
    if args.json:
        print(json.dumps({"atlases": [result.to_dict() for result in results], "sentences": list(sentences),
                          "elapsed_s": round(elapsed, 2)}, indent=2))
        return 0
    for sentence in sentences:
        print(sentence)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0
