"""Tests for the command line (python -m cprune_core)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_data import CLASSES, make_tiny_folder

from cprune_core import cli
from cprune_core.ablation import AnalysisConfig
from cprune_core.cli import options
from cprune_core.cli.options import report_folder
from cprune_core.experiment.importance_report import QUICK_ANALYSIS
from cprune_core.paths import DOCS_DIR, quick_reports_dir
from cprune_core.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
@pytest.fixture(autouse=True)
def private_store(monkeypatch, tmp_path):
    monkeypatch.setenv("CPRUNE_HOME", str(tmp_path / "home"))


def tiny_args(folder: Path, *extra: str) -> list[str]:
    return ["finetune", "--dataset", "folder", "--root", str(folder), "--image-size", "64", "--epochs", "1",
            "--batch-size", "4", "--val-fraction", "0.25", "--test-fraction", "0.25", "--quiet", *extra]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cprune_core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def help_text(command: str, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", ["finetune", "evaluate"])
def test_help_explains_every_option(command, capsys):
    text = help_text(command, capsys)
    subparsers = next(a for a in cli.build_parser()._actions if a.dest == "command")
    for action in subparsers.choices[command]._actions:
        for option in action.option_strings:
            assert option in text
        assert action.help, f"{action.option_strings} has no help"


def test_the_list_of_commands_answers_without_importing_any_command_or_torch():
    """`cprune --help` lists every command with the help its own parser has, from the table alone."""
    probe = ("import sys; from cprune_core.cli import main\n"
             "try: main(['--help'])\nexcept SystemExit: pass\n"
             "print(sorted(name for name in sys.modules if name == 'torch' or name.startswith('cprune_core.cli.')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.splitlines()[-1] == "['cprune_core.cli.interrupt']"
    for command in cli.COMMANDS:
        assert f"{command.name} " in done.stdout or f"{command.name}\n" in done.stdout
    full = next(a for a in cli.build_parser()._actions if a.dest == "command")
    assert {choice.dest: choice.help for choice in full._choices_actions} == {
        command.name: command.help for command in cli.COMMANDS}


# Each command's words, as `cprune WORDS --help` takes them: every parser the command line has.
HELP_COMMANDS = [["finetune"], ["evaluate"], ["graph"], ["experiment"], ["experiment", "paper-table"],
                 ["experiment", "importance"], ["experiment", "atlas"], ["experiment", "tolerance"],
                 ["experiment", "allocation"]]
# What made a command's --help take seconds while its parser imported the command's work (bench/bench_cli.py).
HEAVY = ("torch", "pandas", "scipy", "networkx", "ray")


@pytest.mark.parametrize("words", HELP_COMMANDS, ids=" ".join)
def test_every_commands_help_answers_without_importing_torch_or_the_commands_work(words):
    """A command's --help builds its parser only (cli.parsers): none of torch, pandas, scipy, networkx, Ray, and
    no command's own module, is imported; the help still names the options' choices and defaults."""
    probe = ("import sys, json\nfrom cprune_core.cli import main\ntry: main(sys.argv[1:] + ['--help'])\n"
             "except SystemExit: pass\n"
             f"print(json.dumps(sorted(name for name in sys.modules if name.split('.')[0] in {HEAVY!r} or "
             "(name.startswith('cprune_core.cli.') and name not in ('cprune_core.cli.interrupt', "
             "'cprune_core.cli.options', 'cprune_core.cli.parsers')))))")
    done = subprocess.run([sys.executable, "-c", probe, *words], capture_output=True, text=True, timeout=120,
                          check=True)
    assert json.loads(done.stdout.splitlines()[-1]) == []
    assert "usage: cprune " + " ".join(words) in done.stdout and "--help" in done.stdout


def test_a_commands_handler_runs_its_work_modules_function(monkeypatch):
    """The parser names the command's function by module and name; calling it runs that function with the args
    and returns its exit code."""
    args = cli.build_parser("graph").parse_args(["graph", "--backbone", "efficientnet_lite0"])
    assert args.handler == cli.parsers.Handler("graph", "graph_command")
    ran = []
    monkeypatch.setattr("cprune_core.cli.graph.graph_command", lambda parsed: ran.append(parsed) or 7)
    assert args.handler(args) == 7 and ran == [args]


def test_finetune_json_reports_parseable_final_figures_and_records_the_run(tiny_folder, capsys):
    assert cli.main(tiny_args(tiny_folder, "--json", "--keep", "0.25")) == 0

    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "finished" and 0.0 <= report["test_acc"] <= 1.0
    assert report["kept"] == {"head.1": 320} and report["params"] > 0 and report["config"]["keep"] == 0.25
    [row] = RunStore().list_runs()
    assert row["id"] == report["run_id"] and row["status"] == "finished" and row["test_acc"] == report["test_acc"]


def test_baseline_summary_table_and_no_record(tiny_folder, capsys):
    assert cli.main(tiny_args(tiny_folder, "--baseline", "--no-record")) == 0

    out = capsys.readouterr().out
    assert "method                 baseline" in out and "test accuracy" in out
    assert RunStore().list_runs() == []


def test_saved_model_evaluates_per_class_on_any_folder(tiny_folder, tmp_path, capsys):
    model_dir = tmp_path / "model"
    assert cli.main(tiny_args(tiny_folder, "--save", str(model_dir), "--export", "onnx", "--export", "torchscript",
                              "--json")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model_dir"] == str(model_dir)
    assert {p.name for p in model_dir.iterdir()} == {"model.pt", "model.json", "model.onnx", "model.ts"}

    subset = make_tiny_folder(tmp_path / "subset", {"red": CLASSES["red"], "blue": CLASSES["blue"]}, per_class=3)
    assert cli.main(["evaluate", "--model", str(model_dir), "--root", str(subset), "--batch-size", "4"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert "Evaluating" in captured.err and "6/6" in captured.err  # the bar of images, on stderr
    assert lines[0].split() == ["class", "correct", "total", "accuracy"]
    assert [line.split()[0] for line in lines[1:]] == ["blue", "red", "overall"]
    assert [line.split()[2] for line in lines[1:]] == ["3", "3", "6"]

    assert cli.main(["evaluate", "--model", str(model_dir), "--root", str(subset), "--json", "--quiet"]) == 0
    captured = capsys.readouterr()
    evaluation = json.loads(captured.out)
    assert "Evaluating" not in captured.err
    assert evaluation["total"] == 6 and set(evaluation["per_class"]) == {"blue", "red"}

    other = make_tiny_folder(tmp_path / "other", {"cat": (1, 2, 3), "red": (200, 0, 0)}, per_class=2)
    assert cli.main(["evaluate", "--model", str(model_dir), "--root", str(other)]) == 3
    assert "classes the model was not trained on: cat" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["finetune", "--backbone", "alexnet"], "invalid choice: 'alexnet'"),
    (["finetune", "--keep", "0"], "error: keep must be in (0, 1]"),
    (["finetune", "--dataset", "folder", "--root", "/no/such/folder", "--epochs", "1"], "Dataset folder not found"),
    (["evaluate", "--model", "/no/such/model", "--root", "."], "is not a saved model directory"),
])
def test_bad_inputs_give_one_clear_error_and_a_nonzero_exit(args, message):
    completed = run_cli(*args)
    assert completed.returncode != 0
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr


@pytest.mark.slow
@pytest.mark.parametrize("args, code, message", [
    (["finetune", "--lr", "nan"], 2, "lr must be in (0, 10], got nan"),
    (["finetune", "--keep", "inf"], 2, "keep must be in (0, 1]"),
    (["finetune", "--image-size", "8"], 2, "image_size must be in [32, 1024]"),
    (["finetune", "--seed", "-1"], 2, "seed must be in"),
    (["experiment", "paper-table", "--quick", "--seeds", "0"], 2, "seeds must be in [1, 1000]"),
    (["experiment", "paper-table", "--quick", "--epochs", "0"], 2, "epochs must be in [1, 1000]"),
    (["experiment", "paper-table", "--quick", "--out", "/proc/cprune"], 2, "--out /proc/cprune cannot be written"),
    (["finetune", "--save", "/proc/cprune"], 2, "--save /proc/cprune cannot be written"),
    (["finetune", "--store", "/proc/version"], 3, "run store /proc/version cannot be used"),
])
def test_impossible_values_and_unusable_files_are_one_line_with_their_exit_code(args, code, message):
    completed = run_cli(*args)
    assert completed.returncode == code, completed.stderr
    assert completed.stderr.strip().splitlines() == [f"error: {completed.stderr.strip()[7:]}"]
    assert message in completed.stderr and "Traceback" not in completed.stderr


def test_a_damaged_store_is_set_aside_with_one_warning_and_the_run_goes_on(tiny_folder, tmp_path, capsys):
    store = tmp_path / "runs.sqlite"
    store.write_bytes(b"garbage" * 50)
    assert cli.main(tiny_args(tiny_folder, "--baseline", "--store", str(store))) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "kept as" in warning[0]
    assert len(RunStore(store).list_runs()) == 1 and list(tmp_path.glob("runs.sqlite.damaged-*"))


@pytest.mark.slow
def test_a_run_that_fails_on_its_data_exits_with_the_input_code(tmp_path):
    (tmp_path / "empty").mkdir()
    completed = run_cli("finetune", "--dataset", "folder", "--root", str(tmp_path / "empty"), "--quiet")
    assert completed.returncode == 3 and "No class sub-folders" in completed.stderr
    assert [line for line in completed.stderr.splitlines() if line.startswith("error:")] == \
        completed.stderr.strip().splitlines()


# ----------------------------------------------------------------------------- experiments: --quick and --out


@pytest.mark.parametrize("experiment", ["paper-table", "importance"])
def test_quick_is_refused_into_docs_in_one_line_and_writes_nothing_there(experiment, capsys, monkeypatch, tmp_path):
    docs = tmp_path / "docs"  # stands in for the checkout's docs/, which a failing test must not overwrite
    docs.mkdir()
    monkeypatch.setattr(options, "DOCS_DIR", docs)
    assert cli.main(["experiment", experiment, "--quick", "--out", str(tmp_path / "." / "docs")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: --quick writes a reduced report") and "quick-reports" in err
    assert list(docs.iterdir()) == []


def test_reports_go_to_docs_for_full_runs_and_to_the_scratch_folder_for_quick_ones(tmp_path):
    assert report_folder(None, quick=False) == DOCS_DIR
    assert report_folder(None, quick=True) == quick_reports_dir() == tmp_path / "home" / "quick-reports"
    assert report_folder(str(tmp_path / "mine"), quick=True) == tmp_path / "mine"
    assert report_folder(str(DOCS_DIR), quick=False) == DOCS_DIR  # a full run may regenerate the committed reports


@pytest.mark.parametrize("experiment", ["paper-table", "importance", "atlas"])
def test_experiment_help_says_where_quick_reports_go_and_explains_every_option(experiment, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps help at hyphens otherwise
    with pytest.raises(SystemExit):
        cli.main(["experiment", experiment, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "quick-reports" in text and "never replaces the committed reports" in text
    parser = next(a for a in cli.build_parser()._actions if a.dest == "command").choices["experiment"]
    names = next(a for a in parser._actions if a.dest == "name").choices[experiment]
    for action in names._actions:
        assert action.help and all(option in text for option in action.option_strings)


def test_importance_options_come_from_analysis_config(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps help at hyphens otherwise
    with pytest.raises(SystemExit):
        cli.main(["experiment", "importance", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name, option in AnalysisConfig.options().items():
        assert (option.flag or "--" + name.replace("_", "-")) in text and option.help.split(" (")[0] in text
    assert f"Default: {AnalysisConfig.seeds} (--quick: {QUICK_ANALYSIS.seeds})" in text
    assert f"Valid: {AnalysisConfig.options()['resamples'].range}" in text


@pytest.mark.parametrize("args, message", [
    (["--criteria", "eigenvector,centrality"], "Unknown criterion 'centrality'"),
    (["--keep-ratios", "0.5,0"], "keep ratio must be in (0, 1]"),
    (["--resamples", "0"], "bootstrap resamples must be in [1, 100000]"),
    (["--tau", "1"], "tau must be in [0, 1)"),
])
def test_bad_analysis_settings_are_one_line_before_any_work(args, message, tmp_path, capsys):
    assert cli.main(["experiment", "importance", "--quick", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: ") and message in err
    assert not (tmp_path / "importance.md").exists()
