"""Operator: every visitor's launches in the queue and where each visitor is; take the waiting ones out, stop a
running one.

Opens only for whoever gives the server's CPRUNE_ADMIN_TOKEN (compared in constant time; wrong ones slowed and
logged by cprune_server.OperatorGate); without that setting the page is off. Visitors appear as "visitor N", never
by their ids.
"""
import math
from datetime import datetime

import pandas as pd
import streamlit as st

from streamlit.runtime.scriptrunner import get_script_run_ctx

from cprune_core import ConfigError
from cprune_core.settings import MAKE_SECRET
from cprune_server import Launch, LaunchState, Presence, Whereabouts
from cprune_server.settings import setting
from ui import frame, launches
from ui.services import operator_gate, run_queue
from ui.text import plain

frame.start("Operator", "The server's queue, for whoever runs this server: every visitor's launches, which "
                        "visitors are here, and what to take out.")
session = st.session_state
try:
    token = setting("CPRUNE_ADMIN_TOKEN")
except ConfigError as error:
    st.error(plain(error))
    st.stop()
if not token:
    st.info(f"The operator's page is off: whoever runs this server can set CPRUNE_ADMIN_TOKEN to a token made with "
            f"`{MAKE_SECRET}` to open it.")
    st.stop()


def _admit() -> None:
    verdict = operator_gate().attempt(get_script_run_ctx().session_id, session.pop("operator_token", ""), token,
                                      client=st.context.ip_address or "")
    session["_operator"] = verdict.admitted
    session["_operator_note"] = ("" if verdict.admitted else "That is not the operator's token." if not verdict.wait_s
                                 else f"Too many wrong tokens: try again in {math.ceil(verdict.wait_s)} s.")


def _leave() -> None:
    session["_operator"] = False


def _clear() -> None:
    session["_operator_note"] = f"Took {run_queue().clear_waiting()} waiting launch(es) out of the queue."


def _stop(launch_id: str) -> None:
    stopped = run_queue().stop_any(launch_id)
    session["_operator_note"] = "Stopping it after the current batch." if stopped else "That launch had ended."


if note := session.pop("_operator_note", ""):
    st.info(note)
if not session.get("_operator"):
    st.text_input("Operator token", type="password", key="operator_token", on_change=_admit,
                  help="CPRUNE_ADMIN_TOKEN, as set where the server was started.")
    st.stop()


def _presence(presence: Presence) -> str:
    if presence.where == Whereabouts.HERE:
        return "here"
    unseen = presence.unseen_s
    return f"{presence.where}, unseen for {unseen:.0f} s" if unseen < 120 else \
        f"{presence.where}, unseen for {unseen / 60:.0f} min"


def _what(launch: Launch) -> str:
    if launch.task is not None:
        return launch.title
    config = launch.tracks[0].config
    return (f"{' + '.join(track.label for track in launch.tracks)} · {config.backbone} · {config.dataset} · "
            f"{config.epochs} epoch(s)")


overview = run_queue().overview()
cells = st.columns(3)
cells[0].metric("Running", sum(launch.state == LaunchState.RUNNING for launch in overview.launches))
cells[1].metric("Waiting", len(overview.positions))
cells[2].metric("Visitors away", sum(p.where != Whereabouts.HERE for p in overview.presence.values()),
                help="No tab of theirs is connected: their waiting launches leave the queue, and their running ones "
                     f"stop, {run_queue().limits.grace_s:g} s after the last one closed (then they are gone).")
table = pd.DataFrame([{"launch": launch.id, "visitor": launch.owner,
                       "visitor is": _presence(overview.presence[launch.owner]),
                       "what": _what(launch), "where": launches.where(launch, overview.positions.get(launch.id)),
                       "queued at": datetime.fromtimestamp(launch.created).strftime("%H:%M:%S")}
                      for launch in overview.launches])
if table.empty:
    st.caption("No launch waits, runs or ended lately.")
else:
    st.dataframe(table, hide_index=True, key="operator_table")
controls = st.columns(3)
controls[0].button("Take every waiting launch out", key="operator_clear", on_click=_clear,
                   disabled=not overview.positions, help="Their visitors see that the operator took them out.")
running = [launch.id for launch in overview.launches if launch.state == LaunchState.RUNNING]
if running:
    chosen = controls[1].selectbox("Running launch", running, key="operator_running")
    controls[1].button("Stop it", key="operator_stop", on_click=_stop, args=(chosen,))
controls[2].button("Refresh", key="operator_refresh")
controls[2].button("Leave operator mode", key="operator_leave", on_click=_leave)
