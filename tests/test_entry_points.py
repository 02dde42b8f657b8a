"""Every way in takes a hostile value with one sentence and its exit code (docs/cli.md), never a traceback."""
from __future__ import annotations

import pytest

from cprune_core.cli import main

NO_SUCH_HOME = "~nosuchuser-cprune"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: ") and "Traceback" not in err
    return err


@pytest.mark.parametrize("option, value", [
    ("--cpus-per-run", "inf"), ("--cpus-per-run", "1e300"), ("--cpus-per-run", "nan"), ("--cpus-per-run", "0"),
    ("--cpus-per-run", "-2"), ("--gpus-per-run", "nan"), ("--gpus-per-run", "inf"), ("--gpus-per-run", "-1"),
])
@pytest.mark.parametrize("executor", ["local", "ray"])
def test_paper_table_resources_out_of_range_are_usage_errors_for_both_executors(option, value, executor, capsys,
                                                                              tmp_path):
    code = main(["experiment", "paper-table", "--quick", "--no-record", "--executor", executor, option, value,
                 "--out", str(tmp_path)])
    assert code == 2 and option in one_error_line(capsys)


@pytest.mark.parametrize("option, value", [("--cpus-per-task", "inf"), ("--gpus-per-task", "nan"),
                                           ("--gpus-per-task", "-1")])
def test_importance_resources_out_of_range_are_usage_errors(option, value, capsys, tmp_path):
    code = main(["experiment", "importance", "--quick", option, value, "--out", str(tmp_path)])
    assert code == 2 and option in one_error_line(capsys)


@pytest.mark.parametrize("arguments, words", [
    (["finetune", "--dataset", "folder", "--root", f"{NO_SUCH_HOME}/data", "--no-record", "--quiet"], "not found"),
    (["evaluate", "--model", f"{NO_SUCH_HOME}/model", "--root", "."], "is not a saved model directory"),
    (["finetune", "--weights", "checkpoint", "--checkpoint", f"{NO_SUCH_HOME}/model.pt", "--no-record", "--quiet"],
     "does not exist"),
    (["finetune", "--store", f"{NO_SUCH_HOME}/runs.sqlite", "--quiet"], "run store"),
])
def test_a_home_that_does_not_exist_is_the_usual_not_found_sentence(arguments, words, capsys):
    assert main(arguments) == 3
    assert words in one_error_line(capsys)


@pytest.mark.parametrize("command", [["experiment", "paper-table", "--quick", "--no-record"],
                                     ["experiment", "importance", "--quick"]])
def test_an_output_folder_under_a_home_that_does_not_exist_is_refused_not_created(command, capsys, tmp_path,
                                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*command, "--out", f"{NO_SUCH_HOME}/out"]) == 2
    assert "no home directory is known" in one_error_line(capsys)
    assert not any(tmp_path.iterdir())


def test_a_visitors_folder_under_a_home_that_does_not_exist_is_refused_like_any_other(tmp_path):
    from cprune_core.data import confine
    from cprune_core.errors import PathNotAllowedError

    with pytest.raises(PathNotAllowedError):
        confine(f"{NO_SUCH_HOME}/data", [tmp_path])


@pytest.mark.parametrize("value", ["lots", "nan", "inf", "-1", "0", "2.5", "1e400", "١٠"])
def test_every_numeric_environment_variable_refuses_a_value_that_is_no_valid_number(value, monkeypatch):
    from cprune_core.errors import ConfigError
    from cprune_server.settings import ALL_SETTINGS, check_server_settings

    for name, entry in ALL_SETTINGS.items():
        if entry.range is None:  # a word or a secret: test_word_and_secret_settings
            continue
        monkeypatch.setenv(name, value)
        if value == "0" and 0 in entry.range or value == "2.5" and not entry.range.integer:
            assert entry.read() == float(value)
            continue
        with pytest.raises(ConfigError, match=name) as caught:
            check_server_settings()
        assert "\n" not in str(caught.value)
        monkeypatch.delenv(name)


def test_word_and_secret_settings_say_what_they_must_be_and_never_repeat_a_secret(monkeypatch):
    from cprune_core.errors import ConfigError
    from cprune_server.settings import check_server_settings, setting

    assert (setting("CPRUNE_DOWNLOADS"), setting("CPRUNE_ADMIN_TOKEN")) == ("on", "")  # the defaults when unset
    monkeypatch.setenv("CPRUNE_DOWNLOADS", " OFF ")
    assert setting("CPRUNE_DOWNLOADS") == "off"
    monkeypatch.setenv("CPRUNE_DOWNLOADS", "sometimes")
    with pytest.raises(ConfigError, match="CPRUNE_DOWNLOADS must be one of on, off .*'sometimes'"):
        check_server_settings()
    monkeypatch.delenv("CPRUNE_DOWNLOADS")
    monkeypatch.setenv("CPRUNE_ADMIN_TOKEN", "guessable")
    with pytest.raises(ConfigError, match="CPRUNE_ADMIN_TOKEN is too easy to guess") as caught:
        check_server_settings()
    assert "guessable" not in str(caught.value)
    monkeypatch.setenv("CPRUNE_ADMIN_TOKEN", "a-long-enough-operator-token")
    assert setting("CPRUNE_ADMIN_TOKEN") == "a-long-enough-operator-token"


def test_a_newline_in_a_class_name_stays_inside_the_one_error_line(tmp_path, capsys):
    """A folder name is anyone's text: the error that quotes it is still one line."""
    from tiny_data import make_tiny_folder

    model = tmp_path / "model"
    data = make_tiny_folder(tmp_path / "data")
    assert main(["finetune", "--dataset", "folder", "--root", str(data), "--epochs", "1", "--image-size", "32",
                 "--no-record", "--quiet", "--save", str(model)]) == 0
    capsys.readouterr()
    odd = make_tiny_folder(tmp_path / "odd", {"evil\nerror: forged line": (9, 9, 9), "red": (200, 0, 0)}, per_class=2)
    assert main(["evaluate", "--model", str(model), "--root", str(odd)]) == 3
    assert "evil\\nerror: forged line" in one_error_line(capsys)


@pytest.mark.parametrize("option, value", [("--batch-size", "0"), ("--batch-size", "-5"), ("--seed", "-1")])
def test_evaluate_numbers_out_of_range_are_usage_errors(option, value, capsys):
    assert main(["evaluate", "--model", "anything", "--root", ".", option, value]) == 2
    assert option in one_error_line(capsys)


def interrupted(command: list[str], ready: str, tmp_path) -> tuple[int, str]:
    """Run ``python -m cprune_core *command``, press Ctrl-C once its stderr shows ``ready``, and return its exit
    status and stderr."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    process = subprocess.Popen([sys.executable, "-m", "cprune_core", *command], cwd=Path(__file__).parents[1],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "CPRUNE_HOME": str(tmp_path / "home")})
    seen = b""
    while ready.encode() not in seen:
        part = process.stderr.read1(4096)
        assert part, f"the command ended before {ready!r}: {seen.decode(errors='replace')[-500:]}"
        seen += part
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    return process.wait(timeout=600), (seen + rest).decode(errors="replace")


def last_line(stderr: str) -> str:
    return stderr.replace("\r", "\n").strip().splitlines()[-1]


@pytest.mark.slow
def test_ctrl_c_stops_a_grid_with_its_partial_report_and_exit_130(tmp_path):
    out = tmp_path / "out"
    code, stderr = interrupted(["experiment", "paper-table", "--quick", "--seeds", "1", "--epochs", "1",
                                "--image-size", "32", "--datasets", "flowers-sample", "--out", str(out)],
                               "done 1,", tmp_path)
    assert code == 130 and "Traceback" not in stderr
    assert last_line(stderr).startswith("stopped: interrupted with Ctrl-C;") and "did not finish" in stderr
    report = (out / "results.md").read_text()
    assert "**Stopped with Ctrl-C:**" in report and not list(out.glob(".*tmp*"))


@pytest.mark.slow
def test_ctrl_c_stops_the_importance_analysis_in_one_line_with_exit_130(tmp_path):
    code, stderr = interrupted(["experiment", "importance", "--quick", "--image-size", "32", "--out",
                                str(tmp_path / "out")], "Training the new head", tmp_path)
    assert code == 130 and "Traceback" not in stderr
    assert last_line(stderr).startswith("stopped: ")
    assert not (tmp_path / "out" / "importance.md").exists()


def test_a_ctrl_c_no_command_asked_for_is_one_line_and_exit_130(monkeypatch, capsys):
    def pressed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("cprune_core.cli.evaluate.load_model", pressed)
    assert main(["evaluate", "--model", "anything", "--root", "."]) == 130
    assert capsys.readouterr().err.strip() == "stopped: interrupted with Ctrl-C."
