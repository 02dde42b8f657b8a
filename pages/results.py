"""Results: every recorded fine-tuning run, compared."""
from datetime import datetime

import pandas as pd
import streamlit as st

from cprune_core import RunStore, StoreError
from cprune_core.checkpoint import zip_model
from cprune_server import STORE_ADVICE, downloadable_runs
from ui import charts, frame, state
from ui.text import plain

COLUMNS = ["id", "created", "status", "dataset", "backbone", "mode", "criterion", "keep", "tau", "test_acc", "params",
           "macs", "latency_ms", "duration_s"]

frame.start("Results",
            "Your runs (those of this browser) and those of the command line on this machine (other visitors' "
            "runs are theirs). Click a column header to sort; select rows to overlay their curves.")

try:
    store = RunStore()
    records = store.list_runs(state.access())
except StoreError as error:
    st.error(plain(f"{error} {STORE_ADVICE}"))
    st.stop()
runs = pd.DataFrame(records)
if store.recovery_note:
    st.warning(plain(store.recovery_note))
if runs.empty:
    st.info("No runs recorded yet: start one on the Fine-tune page.")
    st.page_link("pages/finetune.py", label="Go to Fine-tune")
    st.stop()
runs["created"] = [datetime.fromtimestamp(t) for t in runs["created"]]
runs.loc[runs["mode"] != "pruned", ["criterion", "keep", "tau"]] = None  # nothing was pruned: no such settings
table = runs[COLUMNS]

event = st.dataframe(table, key="runs_table", on_select="rerun", selection_mode="multi-row", hide_index=True,
                     width="stretch", column_config={
                         "created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
                         "test_acc": st.column_config.NumberColumn("test accuracy", format="%.3f"),
                         "params": st.column_config.NumberColumn(format="localized"),
                         "macs": st.column_config.NumberColumn("MACs", format="localized"),
                         "latency_ms": st.column_config.NumberColumn("latency (ms)", format="%.1f"),
                         "duration_s": st.column_config.NumberColumn("duration (s)", format="%.0f")})
st.download_button("Download the table (CSV)", table.to_csv(index=False), file_name="cprune-runs.csv",
                   mime="text/csv", key="runs_csv", on_click="ignore")

chosen = table.iloc[event.selection.rows] if event.selection.rows else table.head(2)
left, right = st.columns(2)
with left:
    st.markdown("**Curves of " + ("the selected runs**" if event.selection.rows else "the two newest runs**"))
    points = []
    for run_id in chosen["id"]:
        run = store.get_run(int(run_id))
        points.append(charts.curve_points(f"#{run_id} {run.config['mode']}", run.history, run.config["epochs"]))
    curves = pd.concat(points)
    if curves.empty:
        st.caption("These runs logged no training steps.")
    else:
        st.plotly_chart(charts.training_curves(curves), key="results_curves",
                        config=state.chart_config("results_curves"))
with right:
    st.markdown("**Test accuracy against MACs**")
    scored = runs.dropna(subset=["test_acc", "macs"])
    if scored.empty:
        st.caption("No run has a test accuracy yet.")
    else:
        st.plotly_chart(charts.accuracy_vs_macs(scored), key="results_scatter",
                        config=state.chart_config("results_scatter"))

st.subheader("Download a model")
saved = {run["id"]: run for run in downloadable_runs(records, state.visitor())}
if not saved:
    st.caption("No saved model of yours yet: your finished runs of the Fine-tune page save theirs.")
else:
    run_id = st.selectbox("Run", list(saved), key="download_run",
                          format_func=lambda i: f"#{i} · {saved[i]['mode']} · {saved[i]['backbone']}")
    folder = saved[run_id]["model_dir"]
    st.download_button("Download model (zip: model.pt + model.json)", lambda: zip_model(folder),
                       file_name=f"cprune-run-{run_id}.zip", mime="application/zip", key="model_zip",
                       on_click="ignore")
    st.caption("Reload it with cprune_core.checkpoint.load_model(folder) after unzipping; the weights are a "
               "plain state dict (torch.load(..., weights_only=True)).")
