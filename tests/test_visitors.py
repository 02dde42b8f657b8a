"""What one visitor of a shared server may take and see: a model's download, text from links or files; who is a
visitor (a cookie the server signed); the operator's token. (Uploads, the run queue and the saved models' budget:
tests/test_service.py; the server itself: tests/test_serving.py.)"""
from __future__ import annotations

import io
import logging
import re
import zipfile

import pytest

from cprune_core.checkpoint import MODEL_FILES, model_files, zip_model
from ui.text import ZERO_WIDTH_SPACE, plain


def test_downloads_hold_the_models_own_files_only(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in MODEL_FILES:
        (folder / name).write_bytes(b"x")
    (folder / "notes.txt").write_text("private")
    (folder / "secret.pt").write_text("private")
    (tmp_path / "outside").write_text("private")
    (folder / "model.onnx").unlink()
    (folder / "model.onnx").symlink_to(tmp_path / "outside")
    assert sorted(path.name for path in model_files(folder)) == ["model.json", "model.pt", "model.ts"]
    archive = zipfile.ZipFile(io.BytesIO(zip_model(folder)))
    assert sorted(archive.namelist()) == ["model.json", "model.pt", "model.ts"]  # bare names: no folders
    assert archive.read("model.pt") == b"x"
    assert zipfile.ZipFile(io.BytesIO(zip_model(tmp_path / "gone"))).namelist() == []


@pytest.mark.parametrize("text", [
    "![pixel](https://example.com/p.png)", "[click](https://example.com)", "<img src=x onerror=alert(1)>",
    "https://example.com/x", "www.example.com", "mail me@example.com", "**bold** _it_ `code` $x^2$ :red[alarm] :smile: # heading", "a\\b",
])
def test_visitor_text_is_escaped_so_markdown_shows_it_literally(text):
    escaped = plain(text)
    shown = re.sub(r"\\(.)", r"\1", escaped).replace(ZERO_WIDTH_SPACE, "")
    assert shown == text  # what a reader sees is the text, unchanged
    assert not re.search(r"(?<!\\)[\[\]()<>*_`$:!#]", escaped)  # no markup character left unescaped
    assert not re.search(r"(?i)://|www\\?\.|@\w", escaped.replace("\\", ""))  # no bare address to autolink


def test_a_newline_in_a_quoted_name_keeps_the_message_on_one_line():
    escaped = plain("Class 'evil\nerror: forged' has no images.\r\n\n    indented")
    assert "\n" not in escaped and "\r" not in escaped
    assert re.sub(r"\\(.)", r"\1", escaped) == "Class 'evil\\nerror: forged' has no images.\\r\\n\\n    indented"


# Downloads on a visitor's behalf: the server's choice (CPRUNE_DOWNLOADS) -------------------------------------

@pytest.fixture
def recorded_vgg16(monkeypatch, tmp_path):
    """vgg16 whose builder only records what it was asked for; torch's cache in an empty folder."""
    from dataclasses import replace

    from torch import nn

    from cprune_core import BACKBONES

    asked: list[bool] = []
    monkeypatch.setitem(BACKBONES, "vgg16", replace(BACKBONES["vgg16"], build=lambda pretrained: asked.append(
        pretrained) or nn.Linear(2, 2)))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return asked


def test_with_download_off_torchvision_weights_come_from_the_cache_or_not_at_all(recorded_vgg16):
    from cprune_core import WeightsUnavailableError, get_spec, load_backbone
    from cprune_core.registry import weights_cache_path

    with pytest.raises(WeightsUnavailableError, match="not in this machine's torch cache, and downloads are off"):
        load_backbone("vgg16", download=False)
    assert recorded_vgg16 == [], "the builder (which would download) was never called"
    assert load_backbone("vgg16", "random", download=False).weights_status == "random init"
    cached = weights_cache_path(get_spec("vgg16"))
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"placed there by whoever runs the server")
    load_backbone("vgg16", download=False)
    cached.unlink()
    load_backbone("vgg16")  # the command line: downloads
    assert recorded_vgg16 == [False, True, True]


@pytest.mark.parametrize("downloads, roots, downloaded", [
    ("off", True, False),  # a visitor, downloads off: never
    ("on", True, True),  # a visitor, downloads on: into the app's cache
    ("off", False, True),  # the command line (no roots): always
])
def test_a_visitors_dataset_is_downloaded_only_when_the_server_allows_it(monkeypatch, tmp_path, downloads, roots,
                                                                       downloaded):
    from cprune_core import DatasetError
    from cprune_core.access import COMMAND_LINE
    from cprune_core.data import load_dataset, tf_flowers
    from cprune_server import visitor_access

    fetched = []

    def fetch(url, download_root, remove_finished):
        fetched.append(url)
        raise OSError("offline in this test")

    monkeypatch.setattr(tf_flowers, "download_and_extract_archive", fetch)
    monkeypatch.setenv("CPRUNE_DOWNLOADS", downloads)
    monkeypatch.setenv("CPRUNE_DATA_ROOTS", str(tmp_path))
    cache = tmp_path / "datasets"
    with pytest.raises(DatasetError) as refused:
        load_dataset("tf-flowers", cache_dir=cache, access=visitor_access("a visitor") if roots else COMMAND_LINE)
    assert bool(fetched) == downloaded
    if not downloaded:
        assert "downloads nothing on a visitor's behalf" in str(refused.value) and str(cache) not in str(refused.value)


def test_a_visitors_folder_without_the_dataset_is_read_never_filled(monkeypatch, tmp_path):
    from cprune_core import DatasetError
    from cprune_core.data import caltech101, load_dataset
    from cprune_server import visitor_access

    monkeypatch.setattr(caltech101, "Caltech101", lambda *args, **kwargs: pytest.fail("a download started"))
    monkeypatch.setenv("CPRUNE_DATA_ROOTS", str(tmp_path))
    folder = tmp_path / "empty"
    folder.mkdir()
    for downloads, advice in (("off", "downloads nothing on a visitor's behalf"), ("on", "leave the folder empty")):
        monkeypatch.setenv("CPRUNE_DOWNLOADS", downloads)
        with pytest.raises(DatasetError, match=f"Caltech-101 not found under .*{advice}"):
            load_dataset("caltech101", folder, cache_dir=tmp_path / "cache", access=visitor_access("a visitor"))


# Who is a visitor: a cookie the server signed ----------------------------------------------------------------

def test_a_browser_keeps_its_visitor_id_and_made_up_or_altered_cookies_make_none():
    from cprune_server import anonymous_visitor, is_anonymous, new_cookie, signed_visitor

    key, other_key = bytes(32), bytes(31) + b"x"
    cookie = new_cookie(key)
    assert signed_visitor(cookie, key) == signed_visitor(cookie, key), "every tab and reload: the same id"
    assert signed_visitor(new_cookie(key), key) != signed_visitor(cookie, key), "another browser: another id"
    token, signature = cookie.split(".")
    assert token not in signed_visitor(cookie, key) and signature not in signed_visitor(cookie, key)
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    made_up = ["", "garbage", f"{token}.{flipped}", f"{new_cookie(key).split('.')[0]}.{signature}", cookie + "x",
               " " + cookie, new_cookie(other_key), "a" * 22 + "." + "b" * 43, cookie.replace(".", "|"),
               "2|f4af231a|b6ed417037340033692c9cdc5c18517e|1796473134", "é" * 66, cookie + "\n"]
    for text in made_up:
        assert signed_visitor(text, key) is None, text
    assert signed_visitor(cookie, other_key) is None, "another server's key"
    assert anonymous_visitor() != anonymous_visitor() and is_anonymous(anonymous_visitor())
    assert not is_anonymous(signed_visitor(cookie, key))


def test_the_servers_key_is_kept_private_and_reused(tmp_path, monkeypatch):
    from cprune_server import server_key, visitor_key

    path = tmp_path / "home" / "visitor.key"
    key = server_key(path)
    assert len(key) == 32 and server_key(path) == key
    assert path.stat().st_mode & 0o777 == 0o600
    (tmp_path / "folder.key").mkdir()  # cannot be read or written: a key of this process only
    assert len(server_key(tmp_path / "folder.key")) == 32
    monkeypatch.setenv("CPRUNE_HOME", str(tmp_path / "home"))
    assert visitor_key() == key


def test_new_cookies_are_handed_out_per_address_within_the_hourly_limit():
    from cprune_server import IssueLimit

    now = [0.0]
    limit = IssueLimit(3, clock=lambda: now[0])
    assert [limit.take("10.0.0.1") for _ in range(4)] == [True, True, True, False]
    assert limit.take("10.0.0.2"), "another address has its own allowance"
    now[0] = 1199.0  # a third of an hour: not quite one more
    assert not limit.take("10.0.0.1")
    now[0] = 1201.0
    assert limit.take("10.0.0.1") and not limit.take("10.0.0.1")


def _get(app, path: str, cookie: str = "", client: str = "10.0.0.1") -> list[tuple[bytes, bytes]]:
    """The response headers of a GET of ``path`` through the ASGI ``app``."""
    import asyncio

    headers = [(b"cookie", cookie.encode())] if cookie else []
    scope = {"type": "http", "method": "GET", "path": path, "headers": headers, "client": (client, 5000)}
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["headers"]


def test_the_middleware_hands_a_signed_cookie_to_a_browser_that_brings_none_it_signed():
    from cprune_server import VISITOR_COOKIE, IssueLimit, VisitorCookies, signed_visitor

    async def streamlit(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    key = bytes(range(32))
    app = VisitorCookies(streamlit, lambda: key, IssueLimit(2))
    given = [value.decode() for name, value in _get(app, "/_stcore/health") if name == b"set-cookie"]
    assert len(given) == 1 and given[0].endswith("; Path=/; HttpOnly; SameSite=Lax")
    cookie = given[0].split(";")[0]
    assert cookie.startswith(VISITOR_COOKIE + "=") and signed_visitor(cookie.split("=", 1)[1], key)
    assert b"set-cookie" not in dict(_get(app, "/_stcore/health", f"a=b; {cookie}")), "it has one: none more"
    assert b"set-cookie" not in dict(_get(app, "/explorer")), "only on the health check the page asks first"
    made_up = f"{VISITOR_COOKIE}={'a' * 22}.{'b' * 43}"
    assert b"set-cookie" in dict(_get(app, "/_stcore/health", made_up)), "a made-up one counts for nothing"
    assert b"set-cookie" not in dict(_get(app, "/_stcore/health")), "the address's allowance (2) is spent"
    assert b"set-cookie" in dict(_get(app, "/_stcore/health", client="10.0.0.2"))


# The operator ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("token", ["a" * 22, "a" * 64, "s3cret-operator-token", "abcdefghijklmnopqrstuvwxyz",
                                   "aB3-aB3-aB3-aB3-aB3-aB3-", "1234567890123456789012", "short"])
def test_an_operator_token_that_could_be_guessed_is_refused_without_being_repeated(token, monkeypatch):
    from cprune_core.errors import ConfigError
    from cprune_server.settings import check_server_settings

    monkeypatch.setenv("CPRUNE_ADMIN_TOKEN", token)
    with pytest.raises(ConfigError, match="CPRUNE_ADMIN_TOKEN is too easy to guess .* Make one with python -c") as no:
        check_server_settings()
    assert token not in str(no.value)


def test_tokens_made_with_secrets_are_accepted(monkeypatch):
    import secrets

    from cprune_core.settings import secret_bits
    from cprune_server.settings import setting

    for token in [secrets.token_urlsafe(24) for _ in range(200)] + [secrets.token_hex(32) for _ in range(200)]:
        monkeypatch.setenv("CPRUNE_ADMIN_TOKEN", token)
        assert setting("CPRUNE_ADMIN_TOKEN") == token and secret_bits(token) >= 128


def test_wrong_operator_tokens_are_slowed_per_session_and_for_the_server_and_logged_without_the_token(caplog):
    from cprune_server import OperatorGate, Verdict
    from cprune_server.operator import SERVER_FREE_FAILURES, SERVER_WAIT_S, SESSION_WAIT_MAX_S

    token, now = "the-operators-real-token-1234", [0.0]
    gate = OperatorGate(clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="cprune.operator"):
        assert gate.attempt("s1", "guess-1", token, client="203.0.113.9") == Verdict(False)
    assert "from 203.0.113.9: 1 in a row" in caplog.text and "guess-1" not in caplog.text
    assert gate.attempt("s1", token, token) == Verdict(False, 1.0), "too soon: refused, not even compared"
    waits = []
    for _ in range(8):  # one session's wrong tries, each as soon as it may: 1, 2, 4 ... 60 s apart
        now[0] += gate.wait_s("s1")
        assert not gate.attempt("s1", "guess", token).admitted
        waits.append(gate.wait_s("s1"))
    assert waits == [2, 4, 8, 16, 32, SESSION_WAIT_MAX_S, SESSION_WAIT_MAX_S, SESSION_WAIT_MAX_S]
    assert gate.attempt("s2", token, token).admitted, "another session (here: the operator) is not slowed yet"
    for session in range(SERVER_FREE_FAILURES):  # many sessions, one wrong try each
        gate.attempt(f"new-{session}", "guess", token)
    assert gate.wait_s("yet-another") == SERVER_WAIT_S, "now every session waits"
    assert gate.attempt("s2", token, token) == Verdict(False, SERVER_WAIT_S)
    now[0] += SERVER_WAIT_S
    assert gate.attempt("s2", token, token).admitted
    assert token not in caplog.text and "guess" not in caplog.text
