"""Results: every recorded fine-tuning run, compared."""
import io
import zipfile
from datetime import datetime
from pathlib import Path

import pandas as pd
import streamlit as st

from cprune_core import RunStore, StoreError
from cprune_core.checkpoint import SPEC_FILE, model_files
from cprune_core.data.roots import is_inside
from cprune_core.paths import models_dir
from ui import charts, frame, state
from ui.text import plain

COLUMNS = ["id", "created", "status", "dataset", "backbone", "mode", "criterion", "keep", "tau", "test_acc", "params",
           "macs", "latency_ms", "duration_s"]

frame.start("Results",
            "Your runs and those of the command line on this machine (other visitors' runs are theirs). Click a "
            "column header to sort; select rows to overlay their curves.")

try:
    store = RunStore()
    runs = pd.DataFrame(store.list_runs(visible_to=state.visitor()))
except StoreError as error:
    st.error(plain(error))
    st.stop()
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
# Only what this visitor's runs saved in the app's models folder: a command-line run's --save folder is
# wherever its user chose, and the files there are theirs.
app_models = [models_dir().resolve()]
saved = runs[[owner == state.visitor() and bool(folder) and is_inside(folder, app_models)
              and Path(folder, SPEC_FILE).is_file() for owner, folder in zip(runs["owner"], runs["model_dir"].fillna(""))]]
if saved.empty:
    st.caption("No saved model of yours yet: your finished runs of the Fine-tune page save theirs.")
else:
    run_id = st.selectbox("Run", saved["id"], key="download_run",
                          format_func=lambda i: f"#{i} · {saved.set_index('id').loc[i, 'mode']} · "
                                                f"{saved.set_index('id').loc[i, 'backbone']}")
    files = model_files(Path(saved.set_index("id").loc[run_id, "model_dir"]))  # its own files, nothing else

    def zipped() -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for file in files:
                archive.write(file, file.name)
        return buffer.getvalue()

    if not files:
        st.caption("This model's files are gone: the server keeps saved models within its space budget.")
    else:
        st.download_button("Download model (zip: model.pt + model.json)", zipped,
                           file_name=f"cprune-run-{run_id}.zip", mime="application/zip", key="model_zip",
                           on_click="ignore")
        st.caption("Reload it with cprune_core.checkpoint.load_model(folder) after unzipping; the weights are a "
                   "plain state dict (torch.load(..., weights_only=True)).")
