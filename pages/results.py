"""Results: every recorded fine-tuning run, compared."""
from datetime import datetime

import pandas as pd
import streamlit as st

from cprune_core import BACKBONES, RunStore, StoreError
from cprune_core.checkpoint import zip_model
from cprune_server import STORE_ADVICE, downloadable_runs
from ui import charts, frame, state
from ui.glossary import terms_here
from ui.text import plain

# Latency is left out: each run timed itself once, at its end, under whatever else the machine was doing then.
COLUMNS = ["id", "created", "status", "dataset", "backbone", "mode", "setting", "test_acc", "params", "macs",
           "image_size", "duration_s"]

frame.start("Results",
            "Your runs (those of this browser) and those of the command line on this machine (other visitors' "
            "runs are theirs). Click a column header to sort; select rows to overlay their curves.")

terms_here("baseline", "pruned run", "fine-tune", "params", "MACs", "test, validation, training split", "epoch")
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
# What was pruned, in words ("—" where nothing was); the image size the run's MACs are counted at.
runs["setting"] = [f"{row.criterion}, keep {row.keep:g}, τ {row.tau:g}" if row.mode == "pruned" else "—"
                   for row in runs.itertuples()]
runs["image_size"] = [int(size) if pd.notna(size) else BACKBONES[backbone].input_size if backbone in BACKBONES
                      else None for size, backbone in zip(runs["image_size"], runs["backbone"])]
table = runs[COLUMNS].assign(test_acc=100 * runs["test_acc"].astype(float)).rename(
    columns={"test_acc": "test_acc_pct"})

# Whole on a laptop's screen: no time, counts in millions, and what every run shares said once above it (the CSV
# has every column, every figure as it was recorded).
shown = table.drop(columns="created").assign(params=table["params"] / 1e6, macs=table["macs"] / 1e6)
shared = [column for column in ("status", "dataset", "backbone") if shown[column].nunique() == 1]
if shared:
    st.caption("Every run: " + ", ".join(f"{column} **{plain(shown[column].iloc[0])}**" for column in shared) + ".")
event = st.dataframe(shown.drop(columns=shared), key="runs_table", on_select="rerun", selection_mode="multi-row",
                     hide_index=True, width="stretch", column_config={
                         "id": st.column_config.NumberColumn("run", format="#%d"),
                         "setting": st.column_config.TextColumn("pruned with"),
                         "test_acc_pct": st.column_config.NumberColumn("test acc. (%)", format="%.1f"),
                         "params": st.column_config.NumberColumn("params (M)", format="%.2f"),
                         "macs": st.column_config.NumberColumn("MACs (M)", format="%.1f",
                                                               help="Per image, at the image size (px) of the run."),
                         "image_size": st.column_config.NumberColumn("px", format="%d",
                                                                     help="The image size the run trained at."),
                         "duration_s": st.column_config.NumberColumn("time (s)", format="%.0f")})
st.download_button("Download the table (CSV)", table.to_csv(index=False), file_name="cprune-runs.csv",
                   mime="text/csv", key="runs_csv", on_click="ignore")

chosen = table.iloc[event.selection.rows] if event.selection.rows else table.head(2)
left, right = st.columns(2)
with left:
    st.markdown("**Curves of " + ("the selected runs**" if event.selection.rows else "the two newest runs**"))
    points, modes = [], {}
    for run_id in sorted(chosen["id"]):  # oldest first: a launch's runs in the order the Fine-tune page shows them
        run = store.get_run(int(run_id))
        label = f"#{run_id} {run.config['mode']}"
        modes[label] = run.config["mode"]
        points.append(charts.curve_points(label, run.history, run.config["epochs"]))
    curves = pd.concat(points)
    if curves.empty:
        st.caption("These runs logged no training steps.")
    else:
        st.plotly_chart(charts.training_curves(curves, modes), key="results_curves",
                        config=state.chart_config("results_curves"))
with right:
    st.markdown("**Test accuracy against MACs per image**")
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
