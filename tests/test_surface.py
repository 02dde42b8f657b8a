"""Every way into CPrune against the table of them in docs/serving.md, and a hostile value fed to each (issue 20).

The table ("Every way in, and what guards it") must name every option of the real parser, every environment
variable the code reads and every link parameter; each row names its tests. A hostile value is refused before
any work: the commands' work functions are replaced by one that fails the test, except where the refusal itself
needs the file, folder or model a value names (then on tiny files, or the offline default's structure).
Each refusal is checked for the exit code the guides give (docs/cli.md, "Exit codes"), exactly one `error:` line on stderr, no traceback, and an
empty run store.
"""
from __future__ import annotations

import argparse
import os
import re
import types
from pathlib import Path

import pytest
import torch

from cprune_core.cli import build_parser, main
from cprune_core.cli.options import VALUE_TYPES, comma_floats, name_text, path_text, real_number, whole_number
from cprune_core.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "serving.md"
TABLE_TITLE = "## Every way in, and what guards it"
NO_SUCH_HOME = "~nosuchuser-cprune"
COMMAND = r"(?:finetune|evaluate|experiment [a-z-]+|graph)"
# What each command does once its settings are checked: a refused value must never get there.
WORK = ("cprune_core.cli.finetune.run_and_record", "cprune_core.experiment.run_plan",
        "cprune_core.cli.experiment_importance.analyse_importance", "cprune_core.cli.experiment_atlas.run_atlas",
        "cprune_core.cli.graph.open_source", "cprune_core.cli.evaluate.load_model",
        "cprune_core.cli.experiment_allocation.choose_atlas", "cprune_core.cli.experiment_allocation.plan_allocations")


# --- the table against the code ------------------------------------------------------------------------------

def table_rows() -> list[list[str]]:
    """The guide's table rows, as lists of their four cells."""
    lines = GUIDE.read_text().split(TABLE_TITLE, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| entry point"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    assert rows and all(len(row) == 4 for row in rows)
    return rows


def parser_options() -> dict[str, argparse.Action]:
    """"command --option" -> its argparse action, for every option of every command (help left out)."""
    found: dict[str, argparse.Action] = {}

    def walk(parser: argparse.ArgumentParser, command: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{command} {name}".strip())
            elif action.option_strings and not isinstance(action, argparse._HelpAction):
                found[f"{command} {action.option_strings[0]}"] = action

    walk(build_parser(), "")
    return found


def read_environment_variables() -> set[str]:
    """The environment variables the code reads: os.environ[...] / .get(...) with a literal name, and settings."""
    from cprune_server.settings import ALL_SETTINGS

    names = set(ALL_SETTINGS)
    for path in [*ROOT.glob("cprune_core/**/*.py"), *ROOT.glob("cprune_server/*.py"), *ROOT.glob("ui/**/*.py"),
                 *ROOT.glob("pages/*.py"), ROOT / "app.py"]:
        text = path.read_text()
        names |= set(re.findall(r"environ(?:\.get)?[(\[]\s*\"([A-Z][A-Z0-9_]+)\"", text))
        names |= set(re.findall(r"\bsetting\(\"([A-Z][A-Z0-9_]+)\"\)", text))
    return names


def test_every_cli_option_is_a_row_of_the_table():
    named = {item for row in table_rows() for item in re.findall(rf"`({COMMAND} --[a-z-]+)`", row[0])}
    options = set(parser_options())
    assert options - named == set(), "options without a row in the table of docs/serving.md"
    assert named - options == set(), "rows of the table of docs/serving.md naming options that do not exist"


def test_every_option_that_takes_a_value_is_read_by_a_checking_type():
    """A value is either one of the option's choices or read by one of cli.options' types (numbers in ASCII,
    paths and names not empty): never by int, float or str as they are."""
    for name, action in parser_options().items():
        if action.nargs != 0:
            assert action.choices is not None or action.type in VALUE_TYPES, name


def test_every_environment_variable_the_code_reads_is_a_row():
    named = {name for row in table_rows() for name in re.findall(r"`([A-Z][A-Z0-9_]{3,})`", row[0])}
    assert named == read_environment_variables()


def test_every_link_parameter_is_a_row():
    from ui.state import URL_PARAMS

    named = {name for row in table_rows() for name in re.findall(r"`\?([a-z_]+)=`", row[0])}
    assert named == set(URL_PARAMS)


def test_every_row_names_tests_that_exist():
    defined = {name for path in (ROOT / "tests").glob("test_*.py")
               for name in re.findall(r"^def (test_\w+)\(", path.read_text(), re.MULTILINE)}
    for row in table_rows():
        named = re.findall(r"`(test_\w+)`", row[3])
        assert named and set(named) <= defined, row[0]


# --- the command line ----------------------------------------------------------------------------------------

@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """CPRUNE_HOME under tmp_path and an empty current folder (what a refused command might create lands there,
    not in the checkout). Returns CPRUNE_HOME."""
    monkeypatch.setenv("CPRUNE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path / "home"


def forbid_work(monkeypatch, but: tuple[str, ...] = ()) -> None:
    """Replace every command's work (but ``but``) by a failure of the test."""
    def reached(*args, **kwargs):
        raise AssertionError("a refused value reached the command's work")

    for target in WORK:
        if target not in but:
            monkeypatch.setattr(target, reached)


@pytest.fixture
def no_work(home, monkeypatch) -> Path:
    """``home``, with every command's work replaced by a failure of the test."""
    forbid_work(monkeypatch)
    return home


BASE = {  # each command's arguments besides the one under test: the run store is on, to show it stays empty
    "finetune": ["finetune", "--quiet"],
    "evaluate": ["evaluate", "--model", "model", "--root", "."],
    "experiment paper-table": ["experiment", "paper-table", "--quick", "--out", "out"],
    "experiment importance": ["experiment", "importance", "--quick", "--out", "out"],
    "experiment atlas": ["experiment", "atlas", "--quick", "--out", "out"],
    "experiment tolerance": ["experiment", "tolerance", "--quick", "--out", "out"],
    "experiment allocation": ["experiment", "allocation", "--quick", "--out", "out"],
    "graph": ["graph", "--backbone", "efficientnet_lite0"],
}


def command_line(name: str, value: str) -> list[str]:
    """BASE's arguments of ``name`` ("command --option") with that option given ``value`` (in --option=value form,
    so that a value starting with "-" is still its value)."""
    command, option = name.rsplit(" ", 1)
    base = ["graph"] if name == "graph --weights" else list(BASE[command])
    if option in base:
        del base[base.index(option):base.index(option) + 2]
    return [*base, f"{option}={value}"]


def refused(argv: list[str], capsys, home: Path, code: int) -> str:
    """Run ``argv``; check its exit ``code``, the one error line on stderr, no traceback and an empty run store
    (and no atlas records). Returns the error line."""
    try:
        status = main(argv)
    except SystemExit as exit:  # argparse's refusal
        status = exit.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert status == code, err
    assert "Traceback" not in err and len(lines) == 1, err
    store = home / "runs.sqlite"
    assert not store.exists() or RunStore(store).list_runs() == [], "a refused command recorded a run"
    assert not (home / "atlas" / "layers").exists() or not any((home / "atlas" / "layers").iterdir())
    return lines[0]


def options_of(*types_or_actions) -> list[str]:
    found = []
    for name, action in parser_options().items():
        if ("choices" in types_or_actions and action.choices is not None and action.nargs != 0
                or "flag" in types_or_actions and action.nargs == 0
                or action.choices is None and action.type in types_or_actions):
            found.append(name)
    return sorted(found)


@pytest.mark.parametrize("name", options_of("choices"))
@pytest.mark.parametrize("value", ["", "é", "NAN", "../x", "-1"])
def test_a_choice_refuses_anything_but_its_choices(name, value, capsys, no_work):
    line = refused(command_line(name, value), capsys, no_work, 2)
    assert "invalid choice" in line and name.split()[-1] in line


@pytest.mark.parametrize("name", options_of("flag"))
def test_a_flag_takes_no_value(name, capsys, no_work):
    assert "ignored explicit argument" in refused(command_line(name, "yes"), capsys, no_work, 2)


HOSTILE_NUMBERS = ["inf", "-inf", "nan", "-1", "1e300", "1e400", "1" + "0" * 20, "", " ", "١٠", "２", "abc", "0x10",
                   "1_0e", "0.5,nan", "None", "[1]"]


@pytest.mark.parametrize("name", options_of(whole_number, real_number, comma_floats))
def test_a_number_out_of_its_range_or_not_in_ascii_is_a_usage_error(name, capsys, no_work):
    option = name.split()[-1].removeprefix("--")
    words = {option, option.replace("-", "_"), option.replace("-", " "), option.split("-")[0]}
    for value in HOSTILE_NUMBERS:
        line = refused(command_line(name, value), capsys, no_work, 2)
        assert any(word in line for word in words), (value, line)


@pytest.mark.parametrize("name", options_of(path_text, name_text))
def test_an_empty_path_or_name_is_a_usage_error(name, capsys, no_work):
    for value in ["", "  "] + (["model\0.pt"] if parser_options()[name].type is path_text else []):
        assert name.split()[-1] in refused(command_line(name, value), capsys, no_work, 2)


def hostile_files(folder: Path) -> list[str]:
    """Paths that are no usable file: missing (non-ASCII), under an unknown home, a device of endless zeros, a
    special file that cannot be read, a folder, an empty file, a file of garbage."""
    (folder / "empty.pt").write_bytes(b"")
    (folder / "garbage.pt").write_bytes(os.urandom(4096))
    return ["/nonexistent/é.pt", f"{NO_SUCH_HOME}/model.pt", "/dev/zero", "/proc/self/mem", str(folder),
            str(folder / "empty.pt"), str(folder / "garbage.pt")]


@pytest.mark.parametrize("arguments", [
    ["finetune", "--quiet", "--dataset", "flowers-sample", "--weights", "checkpoint", "--checkpoint"],
    ["graph", "--weights"], ["evaluate", "--root", ".", "--model"]])
def test_an_input_file_that_cannot_be_read_is_an_input_error(arguments, capsys, home, tmp_path):
    for path in hostile_files(tmp_path):
        line = refused([*arguments, path], capsys, home, 3)
        assert os.path.basename(path) in line, line


DATASET_REFUSALS = [f"{NO_SUCH_HOME}/data", "/nonexistent/é", "/dev/zero", "/proc/self/mem"]


@pytest.mark.parametrize("arguments, roots", [
    (["finetune", "--quiet", "--dataset", "folder", "--root"], DATASET_REFUSALS + ["empty"]),
    (["evaluate", "--model", "model", "--root"], DATASET_REFUSALS + ["empty"]),
    (["experiment", "importance", "--quick", "--out", "out", "--dataset", "folder", "--root"], DATASET_REFUSALS[:1]),
    (["experiment", "atlas", "--quick", "--out", "out", "--dataset", "folder", "--root"], DATASET_REFUSALS[:1]),
])
def test_a_dataset_folder_that_cannot_be_read_is_an_input_error_and_records_nothing(arguments, roots, capsys, home,
                                                                                     monkeypatch):
    """The refusal comes from reading the folder inside the run; finetune's run is then not kept in the store."""
    monkeypatch.setattr("cprune_core.cli.evaluate.load_model", lambda path: types.SimpleNamespace(classes=["a"]))
    Path("empty").mkdir()
    for root in roots:
        line = refused([*arguments, root], capsys, home, 3)
        assert "Dataset folder" in line or "no image" in line.lower() or "class" in line, line


@pytest.fixture
def tiny_weights(tmp_path) -> Path:
    from weights_files import save_safetensors

    return save_safetensors({"fc.weight": torch.randn(6, 4)}, tmp_path / "tiny.safetensors")


@pytest.mark.parametrize("arguments", [
    ["finetune", "--quiet", "--save"], ["experiment", "paper-table", "--quick", "--out"],
    ["experiment", "importance", "--quick", "--out"], ["experiment", "atlas", "--quick", "--out"],
    ["experiment", "tolerance", "--quick", "--out"], ["experiment", "allocation", "--quick", "--out"],
    ["graph", "--layer", "fc", "--weights", "WEIGHTS", "--out"]])
def test_an_output_folder_that_cannot_be_written_is_refused_before_any_work(arguments, capsys, home, tiny_weights,
                                                                           monkeypatch):
    # graph looks the layer up in the file before it makes the folder: its file is opened
    forbid_work(monkeypatch, but=("cprune_core.cli.graph.open_source",))
    arguments = [str(tiny_weights) if part == "WEIGHTS" else part for part in arguments]
    for folder in [f"{NO_SUCH_HOME}/out", "/proc/version/out", "/dev/null"]:
        assert "cannot be written" in refused([*arguments, folder], capsys, home, 2)
    assert not any(Path.cwd().iterdir()), "nothing was made in the current folder"


def test_a_quick_run_never_writes_into_docs(capsys, no_work):
    for command in ["paper-table", "importance", "atlas", "tolerance", "allocation"]:
        assert "--quick" in refused(["experiment", command, "--quick", "--out", str(ROOT / "docs")], capsys, no_work, 2)


def test_a_run_store_that_cannot_be_used_is_an_input_error(capsys, no_work, tmp_path):
    (tmp_path / "folder.sqlite").mkdir()
    os.mkfifo(tmp_path / "pipe.sqlite")
    journal_before = Path("/dev/null-journal").exists()
    for store in ["/dev/null", "/proc/version", str(tmp_path / "folder.sqlite"), str(tmp_path / "pipe.sqlite"),
                  f"{NO_SUCH_HOME}/runs.sqlite"]:
        assert "run store" in refused(["finetune", "--quiet", "--store", store], capsys, no_work, 3)
    assert Path("/dev/null-journal").exists() == journal_before, "SQLite wrote a journal beside a device"


HOSTILE_NAMES = ["no\nsuch", "../../etc/passwd", "<img src=x onerror=alert(1)>", "é" * 300, "-1"]


@pytest.mark.parametrize("arguments", [
    ["finetune", "--quiet", "--dataset", "flowers-sample", "--weights", "random", "--layers"],
    ["experiment", "importance", "--quick", "--out", "out", "--layer"],
    ["experiment", "atlas", "--quick", "--out", "out", "--layers"],
    ["graph", "--backbone", "efficientnet_lite0", "--backbone-weights", "random", "--out", "out", "--layer"],
    ["graph", "--backbone", "efficientnet_lite0", "--criteria"],
    ["experiment", "importance", "--quick", "--out", "out", "--criteria"],
])
def test_a_name_is_looked_up_shown_as_text_and_never_a_path(arguments, capsys, home):
    """Names are free text: looked up among the model's layers or the criteria, quoted on one line (a newline as
    \\n), and never opened or created as a path."""
    for name in HOSTILE_NAMES[:5 if "--criteria" in arguments else 3 if "graph" in arguments else 2]:
        line = refused([*arguments[:-1], f"{arguments[-1]}={name}"], capsys, home, 2)
        assert repr(name)[1:-1][:40] in line, line
        assert not Path("out").exists() or not any(Path("out").iterdir())
    assert sorted(p.name for p in Path.cwd().parent.iterdir()) == ["cwd"] + (["home"] if home.exists() else [])


def test_a_layer_name_from_a_file_never_leaves_the_output_folder(tmp_path, capsys, home):
    """A tensor's name is the file's author's text: the layer is found by it, and its files are named by
    cli.graph.file_stem, inside --out."""
    from weights_files import save_safetensors

    from cprune_core.cli.graph import file_stem

    name = "../../escape\n<b>x</b>"
    path = save_safetensors({f"{name}.weight": torch.randn(6, 4)}, tmp_path / "named.safetensors")
    out = tmp_path / "deep" / "out"
    assert main(["graph", "--weights", str(path), "--layer", name, "--criteria", "l1", "--out", str(out),
                 "--format", "csv"]) == 0
    stem = file_stem(name)
    assert "/" not in stem and sorted(p.name for p in out.iterdir()) == [f"{stem}.edges.csv", f"{stem}.nodes.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "deep", "named.safetensors"]
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["out"]
    capsys.readouterr()


# --- the environment -----------------------------------------------------------------------------------------

def test_a_malformed_ray_address_from_the_environment_is_refused_the_same_way(capsys, no_work, monkeypatch):
    for address in ["127.0.0.1:²", "a" * 64 + ".example:6379", "host:0", "[::1:6379", "ray://:"]:
        monkeypatch.setenv("RAY_ADDRESS", address)
        line = refused(["experiment", "paper-table", "--quick", "--no-record", "--out", "out", "--executor", "ray"],
                       capsys, no_work, 3)
        assert line.startswith("error: Cannot reach the Ray cluster")


def test_ray_use_tls_is_on_only_for_1_or_true(monkeypatch):
    """Any other value leaves the probe as it is: a closed port is still refused in one sentence."""
    from app_server import free_port

    from cprune_core.errors import ClusterError
    from cprune_core.experiment.ray_connect import probe_address

    port = free_port()
    for value in ["yes", "\x1b[31m", "١", ""]:
        monkeypatch.setenv("RAY_USE_TLS", value)
        with pytest.raises(ClusterError, match="Cannot reach the Ray cluster"):
            probe_address(f"127.0.0.1:{port}", timeout_s=2)


def test_data_roots_must_be_absolute_folders(monkeypatch, tmp_path):
    from cprune_core.errors import ConfigError
    from cprune_server import data_roots
    from cprune_server.settings import check_server_settings

    for value in ["data", f"{NO_SUCH_HOME}/data", ":", "/srv/data:relative", "  :  ", "é\n"]:
        monkeypatch.setenv("CPRUNE_DATA_ROOTS", value)
        with pytest.raises(ConfigError, match="CPRUNE_DATA_ROOTS must list absolute folder paths") as caught:
            check_server_settings()
        assert "\n" not in str(caught.value)
        with pytest.raises(ConfigError):  # where a page asks for them: the same sentence, never a wrong root
            data_roots()
    monkeypatch.setenv("CPRUNE_DATA_ROOTS", f"{tmp_path}{os.pathsep}~{os.pathsep}")
    assert data_roots() == (tmp_path.resolve(), Path("~").expanduser().resolve())


@pytest.mark.parametrize("variable", ["CPRUNE_HOME", "XDG_CACHE_HOME"])
def test_a_home_that_cannot_hold_the_store_is_an_input_error(variable, capsys, no_work, monkeypatch, tmp_path):
    monkeypatch.delenv("CPRUNE_HOME")
    (tmp_path / "a-file").write_text("")
    for value in ["/dev/null", str(tmp_path / "a-file"), "/proc/version", f"{NO_SUCH_HOME}"]:
        monkeypatch.setenv(variable, value)
        assert "run store" in refused(["finetune", "--quiet"], capsys, tmp_path / "nowhere", 3)
    assert not any(Path.cwd().iterdir())


# --- the app -------------------------------------------------------------------------------------------------

@pytest.fixture
def app_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CPRUNE_HOME", str(tmp_path))
    for name in ("CPRUNE_DATA_ROOTS", "CPRUNE_DOWNLOADS"):
        monkeypatch.delenv(name, raising=False)


def open_app(query: dict, page: str | None = None):
    """The app opened by a link with ``query`` (on ``page``: the link opens that page itself)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.query_params.update(query)
    (at.switch_page(f"pages/{page}.py") if page else at).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.parametrize("query", [
    {"backbone": "é" * 500, "criterion": "<script>alert(1)</script>", "tau": "nan", "keep": "-1"},
    {"backbone": "", "criterion": "![x](https://evil.example/pixel.png)", "tau": "inf", "keep": "٠.٥"},
    {"backbone": "../../etc/passwd", "criterion": "l1\nerror: forged", "tau": "1e400", "keep": "0x1"},
])
def test_hostile_link_parameters_are_ignored_with_a_warning_and_the_page_works(query, app_home):
    from ui.state import DEFAULTS
    from ui.text import plain

    at = open_app(query)
    warnings = [w.value for w in at.warning]
    for name in query:
        assert at.session_state[name] == DEFAULTS[name]
        assert any(f"Ignored a link parameter ({plain(name)}" in w for w in warnings), (name, warnings)
    assert all("](" not in w and "<script>" not in w and "\n" not in w for w in warnings)
    assert at.main.get("bidi_component"), "the Graph explorer still draws its graph"
    assert {name: at.query_params.get(name) for name in ("backbone", "criterion")} == {
        "backbone": DEFAULTS["backbone"], "criterion": DEFAULTS["criterion"]}


@pytest.mark.parametrize("layer", ["<img src=x onerror=alert(1)>", "[x](https://evil.example)\n", "é" * 300])
def test_a_hostile_layer_in_a_link_is_shown_as_text(layer, app_home):
    from ui.text import plain

    at = open_app({"layer": layer}, page="prune")
    captions = [c.value for c in at.caption if "is not a prunable layer" in c.value]
    assert captions and plain(repr(layer)) in captions[0]
    assert not re.search(r"(?<!\\)[<\[\]]", captions[0]), "every bracket is escaped: Markdown shows it as text"
    assert at.query_params["layer"] == at.session_state["layer"] != layer


@pytest.mark.parametrize("folder", ["/", "..", "/etc", "/proc/self/root", f"{NO_SUCH_HOME}/data", "/é", "\x00",
                                    "data/../../..", "data/out", "data/out/passwd", "data\n/x"])
def test_a_visitors_folder_gets_one_sentence_that_says_nothing_of_it(folder, monkeypatch, tmp_path):
    from cprune_core.data.roots import NOT_ALLOWED
    from cprune_core.errors import ConfigError, PathNotAllowedError
    from ui.launches import check_dataset_folder

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "out").symlink_to("/etc")  # a link inside the root that leads out of it
    (tmp_path / "cwd").mkdir()
    monkeypatch.setenv("CPRUNE_DATA_ROOTS", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path / "cwd")
    with pytest.raises(PathNotAllowedError) as caught:
        check_dataset_folder("folder", folder if folder.startswith(("/", "~", ".", "\x00")) else f"../{folder}")
    assert str(caught.value) == NOT_ALLOWED
    with pytest.raises(ConfigError, match="needs a folder"):
        check_dataset_folder("folder", "")


@pytest.mark.parametrize("name", ["../../etc/passwd", "..", "", "evil\nname.pt", "é" * 500 + ".pt", "/abs/x.pt"])
def test_an_upload_is_capped_and_its_name_is_never_a_path(name, tmp_path, monkeypatch):
    from cprune_core.errors import CheckpointError
    from cprune_core.registry import MAX_CHECKPOINT_BYTES
    from cprune_server import Uploads

    (tmp_path / "uploads").mkdir()
    uploads = Uploads(tmp_path / "uploads", budget_bytes=2**20, is_active=lambda user: True)
    path = uploads.add("visitor", name, b"not a checkpoint")
    assert path.parent == tmp_path / "uploads" and re.fullmatch(r"[0-9a-f]{16}-[A-Za-z0-9._-]+", path.name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["uploads"]
    monkeypatch.setattr("cprune_server.uploads.MAX_CHECKPOINT_BYTES", 8)
    with pytest.raises(CheckpointError, match="the limit is"):
        uploads.add("visitor", name, b"123456789")
    assert MAX_CHECKPOINT_BYTES == 600 * 2**20
