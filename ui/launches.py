"""What the pages that start background work share: the dataset-folder input and its check, the
checkpoint a launch holds, each launch's header, and the visitor's launches redrawn while they run."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import streamlit as st

from cprune_core import DATASETS, ConfigError
from cprune_core.data import confine
from cprune_core.experiment.importance_report import importance_config
from cprune_server import Launch, LaunchState, VisitorView, data_roots, downloads_allowed, launch_user

from . import frame, state
from .cache import ModelKey
from .services import run_queue, uploads
from .text import plain

__all__ = ["dataset_folder_input", "check_dataset_folder", "hold_checkpoint", "launch_header", "where", "not_started",
           "task_launches", "live_launches"]


def dataset_folder_input(dataset: str, key: str) -> str:
    """The folder the visitor types for ``dataset`` (stripped; "" when left empty), or "" with no input drawn
    when the dataset has a fixed place."""
    if DATASETS[dataset].default_root is not None:
        return ""
    what = ("A folder with one sub-folder per class" if dataset == "folder" else
            "Where the dataset is (or will be downloaded); empty: the server's dataset cache" if downloads_allowed()
            else "Where the dataset is; empty: the server's dataset cache (this server downloads nothing for you)")
    roots = ", ".join(str(path) for path in data_roots())
    return st.text_input("Dataset folder", key=key,
                         help=f"{what}. It must lie inside this server's data folders: {roots}.").strip()


def check_dataset_folder(dataset: str, root: str) -> None:
    """ConfigError when the 'folder' dataset has no folder; PathNotAllowedError, in words that tell nothing
    about the path, when ``root`` lies outside the server's data folders."""
    if dataset == "folder" and not root:
        raise ConfigError("The 'folder' dataset needs a folder: type its path above (one sub-folder per class).")
    if root:
        confine(root, data_roots())


def hold_checkpoint(key: ModelKey, launch: Launch) -> None:
    """Keep the uploaded checkpoint ``launch`` starts from (if any) while it waits or runs, even after the
    visitor's tab has closed."""
    if key.weights == "checkpoint":
        uploads().hold(Path(key.checkpoint), launch_user(launch.id))


def launch_header(launch: Launch, position: int | None, key: str, title: str = "") -> None:
    """The top of a launch's box: ``title``, when it was queued and where it stands (waiting at ``position`` in
    the queue, running, ended, or never started and why); a crash of its worker; while it waits or runs, its
    Cancel or Stop button (widget key ``{key}_stop_{launch id}``)."""
    queued = datetime.fromtimestamp(launch.created).strftime("%H:%M:%S")
    st.markdown(f"**{plain(title)}**, queued at {queued} · {where(launch, position)}" if title else
                f"**Queued at {queued}** · {where(launch, position)}")
    if launch.error:
        frame.show_bug("The worker crashed while running this launch: that is a bug, please report it.",
                       launch.error)
    if launch.state != LaunchState.ENDED:
        stopping = launch.stop.is_set()
        st.button("Cancel" if launch.state == LaunchState.QUEUED else "Stop", key=f"{key}_stop_{launch.id}",
                  on_click=run_queue().stop, args=(state.visitor(), launch.id), disabled=stopping,
                  help="Takes a waiting launch out of the queue; ends a running one within one batch.")
        if stopping:
            st.caption("Stopping after the current batch …")


def where(launch: Launch, position: int | None) -> str:
    """Where a launch stands, in words."""
    if launch.state == LaunchState.QUEUED:
        return f"waiting, number {position} in the queue"
    if launch.state == LaunchState.RUNNING:
        return "running"
    if launch.started is None:
        return f"not started: {launch.ended_because}"
    return f"ended: {launch.ended_because}" if launch.ended_because else "ended"


def not_started(launch: Launch) -> str:
    """Why a run of an ended launch never started: the launch was stopped, or its worker crashed first."""
    why = launch.ended_because or ("the worker crashed before it" if launch.error else "the launch ended first")
    return f"not started: {why}"


def _task(launch: Launch, position: int | None, key: str, show_result: Callable[[object], None]) -> None:
    with st.container(border=True):
        launch_header(launch, position, key=key, title=launch.title)
        if launch.state != LaunchState.ENDED:
            done, total, message = launch.progress
            st.progress(min(done / total, 1.0) if total else 0.0, text=plain(message) or "waiting")
        elif launch.failure:
            st.warning(plain(launch.failure))
        elif launch.result is not None:
            show_result(launch.result)


def task_launches(view: VisitorView, kind: str, key: str, show_result: Callable[[object], None]) -> list[Launch]:
    """A box for each of the visitor's tasks of ``kind`` that waits or runs (its header, with Stop, and its
    progress) and for the newest that ended (why it failed or stopped, or ``show_result(its result)``).
    Returns all of the visitor's tasks of that kind."""
    mine = view.of_kind(kind)
    pending = [launch for launch in mine if launch.state != LaunchState.ENDED]
    ended = [launch for launch in mine if launch.state == LaunchState.ENDED]
    for launch in pending + ended[:1]:  # the newest result only
        _task(launch, view.positions.get(launch.id), key, show_result)
    return mine


def live_launches(key: str, kind: str, draw: Callable[[VisitorView], None]) -> None:
    """``draw(view)`` of this visitor's launches, in a fragment redrawn every second while any launch of
    ``kind`` (FINETUNE, or a kind of task) waits or runs; when the last one ends, the whole page reruns once
    (its other parts may depend on the results) and the polling stops."""
    session, visitor = st.session_state, state.visitor()
    polling = f"{key}_polling"
    session[polling] = run_queue().view(visitor).active(kind)

    @st.fragment(run_every=1.0 if session[polling] else None)
    def launches() -> None:
        view = run_queue().view(visitor)
        if session.get(polling) and not view.active(kind):
            session[polling] = False
            st.rerun()  # the launches ended: redraw the page once and stop polling
        draw(view)

    launches()


def image_size_select(column, spec, key: str) -> int:
    """An analysis's input size in ``column``: the multiples of 32 that ``spec`` accepts, the analyses' default
    (``importance_config``'s) chosen, else the largest."""
    sizes = [size for size in range(32, spec.input_size + 1, 32) if size in spec.input_sizes]
    default = importance_config().image_size
    st.session_state.setdefault(key, default if default in sizes else sizes[-1])  # unless a link chose one
    return int(column.selectbox("Image size", sizes, key=key, help="The flower photos are 128 px; smaller is faster."))
