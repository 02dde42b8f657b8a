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
from ..experiment.settings import DEFAULT_IMAGE_SIZE
from ..paths import writable_dir
from ..registry import DEFAULT_BACKBONE
from .interrupt import stop_on_ctrl_c
from .options import executor_flags, make_executor, report_folder, settings_flags, settings_from_args
from .progress_bars import StepProgressBar

__all__ = ["atlas_command"]

DEFAULTS = AtlasSettings()
QUICK = AtlasSettings.quick()


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
