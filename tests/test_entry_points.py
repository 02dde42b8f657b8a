"""Every way in takes a hostile value with one sentence and the README's exit code, never a traceback."""
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
    from cprune_core.settings import SETTINGS, check_settings, setting

    for name, entry in SETTINGS.items():
        if entry.range is None:  # a word or a secret: test_word_and_secret_settings
            continue
        monkeypatch.setenv(name, value)
        if value == "0" and 0 in entry.range or value == "2.5" and not entry.range.integer:
            assert setting(name) == float(value)
            continue
        with pytest.raises(ConfigError, match=name) as caught:
            check_settings()
        assert "\n" not in str(caught.value)
        monkeypatch.delenv(name)


def test_word_and_secret_settings_say_what_they_must_be_and_never_repeat_a_secret(monkeypatch):
    from cprune_core.errors import ConfigError
    from cprune_core.settings import check_settings, setting

    assert (setting("CPRUNE_DOWNLOADS"), setting("CPRUNE_ADMIN_TOKEN")) == ("on", "")  # the defaults when unset
    monkeypatch.setenv("CPRUNE_DOWNLOADS", " OFF ")
    assert setting("CPRUNE_DOWNLOADS") == "off"
    monkeypatch.setenv("CPRUNE_DOWNLOADS", "sometimes")
    with pytest.raises(ConfigError, match="CPRUNE_DOWNLOADS must be one of on, off .*'sometimes'"):
        check_settings()
    monkeypatch.delenv("CPRUNE_DOWNLOADS")
    monkeypatch.setenv("CPRUNE_ADMIN_TOKEN", "guessable")
    with pytest.raises(ConfigError, match="CPRUNE_ADMIN_TOKEN must be at least 16 characters") as caught:
        check_settings()
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
