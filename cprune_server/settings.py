"""The environment variables the app's server reads (its run queue, visitors' uploads and saved models,
downloads and data folders on a visitor's behalf, the operator's token), declared as the core's are
(``cprune_core.settings.Setting``), and the check the server makes of every variable as it starts.
"""
from __future__ import annotations

from pathlib import Path

from cprune_core.ranges import Range
from cprune_core.settings import SETTINGS as CORE_SETTINGS
from cprune_core.settings import Setting, check_settings

__all__ = ["SERVER_SETTINGS", "ALL_SETTINGS", "setting", "check_server_settings", "settings_table"]


SERVER_SETTINGS: dict[str, Setting] = {entry.name: entry for entry in (
    Setting("CPRUNE_CONCURRENT_RUNS", 1, "launches the app's queue runs at once (on a CPU one run already uses "
            "every core)", Range(1, 64, integer=True)),
    Setting("CPRUNE_QUEUED_RUNS_PER_VISITOR", 2, "launches one visitor (one browser) may have waiting or running",
            Range(1, 1000, integer=True)),
    Setting("CPRUNE_VISITOR_GRACE_S", 60, "seconds a visitor's launches, waiting or running, are kept after the last "
            "tab of their browser closed (a reload takes a second or two)", Range(0, 86_400)),
    Setting("CPRUNE_MAX_LAUNCH_MINUTES", 120, "minutes a visitor's launch may run before the server stops it",
            Range(0, 10_080, low_open=True)),
    Setting("CPRUNE_NEW_VISITORS_PER_HOUR", 120, "visitor ids the server hands out per client address an hour (one per "
            "browser); beyond, new browsers share the anonymous visitors' launches", Range(1, 10**6, integer=True)),
    Setting("CPRUNE_MODELS_BUDGET_MB", 5120, "disk space for the models the app's runs save, oldest deleted first",
            Range(1, 10**9, integer=True)),
    Setting("CPRUNE_UPLOAD_BUDGET_MB", 2048, "disk space for visitors' uploaded files", Range(1, 10**9, integer=True)),
    Setting("CPRUNE_UPLOAD_MEMORY_MB", 1024, "memory for the files Streamlit's upload endpoint receives and holds, "
            "every session's together", Range(1, 10**9, integer=True)),
    Setting("CPRUNE_DOWNLOADS", "on", "whether the app downloads weights and datasets a visitor asks for; off: it "
            "offers only what is already cached", choices=("on", "off")),
    Setting("CPRUNE_ADMIN_TOKEN", "", "the token that opens the app's operator page (/operator); unset: no page",
            secret=True),
    Setting("CPRUNE_DATA_ROOTS", "", "the folders the app's visitors may read datasets from; unset: the project's "
            "assets, ../shared/data and the dataset cache", folders=True),
    Setting("CPRUNE_MODEL_ROOTS", "", "the folders whose models (a Hugging Face checkpoint folder, a folder of "
            "safetensors files, an ONNX model with its external data, any weights file) the app's visitors may explore "
            "without uploading them; unset: none", folders=True),
)}
ALL_SETTINGS: dict[str, Setting] = {**CORE_SETTINGS, **SERVER_SETTINGS}  # every variable the app reads


def settings_table() -> str:
    """Every variable of ALL_SETTINGS as the Markdown table docs/serving.md shows (its test keeps the two equal):
    name, default (unset: a secret or folders), valid values, meaning."""
    def valid(entry: Setting) -> str:
        if entry.choices:
            return " or ".join(entry.choices)
        if entry.secret:
            return "a hard-to-guess text"
        if entry.folders:
            return "absolute folders separated by `:`"
        return str(entry.range)

    rows = ["| Variable | Default | Valid | What it bounds |", "|---|---|---|---|"]
    rows += [f"| `{entry.name}` | {entry.default if entry.default != '' else 'unset'} | {valid(entry)} | "
             f"{entry.help} |" for entry in sorted(ALL_SETTINGS.values(), key=lambda entry: entry.name)]
    return "\n".join(rows)


def setting(name: str) -> int | float | str | tuple[Path, ...]:
    """The value of the server's environment variable ``name`` (one of SERVER_SETTINGS): ``Setting.read``
    (ConfigError naming the variable when its value cannot be used)."""
    return SERVER_SETTINGS[name].read()


def check_server_settings() -> None:
    """Read every variable the app reads, the core's and the server's, once: ConfigError naming the first whose
    value cannot be used."""
    check_settings(ALL_SETTINGS.values())
