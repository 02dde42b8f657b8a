"""Does centrality predict importance? Each neuron's exact ablation effect against every criterion."""
from dataclasses import replace

import pandas as pd
import streamlit as st

from cprune_core import CPruneError
from cprune_core.ablation import AnalysisConfig, analyse_importance
from cprune_core.experiment.importance_report import importance_config
from cprune_server import VisitorView
from ui import charts, forms, frame, launches, sidebar, state
from ui.glossary import terms_here
from ui.services import run_queue
from ui.text import plain

ANALYSIS, BASELINE = AnalysisConfig(), importance_config()  # the analysis's and its head run's defaults
KIND = "importance"  # this page's launches in the run queue

frame.start("Does centrality predict importance?",
            "The method's premise is that the most central neurons are the ones that matter. Here a new head is "
            "trained once on the frozen backbone, then each neuron is removed alone (as pruning removes it, with no "
            "retraining) and the change in validation loss measured: does any criterion predict that change?")

key, bundle = sidebar.require_backbone()
terms_here("ablation", "Spearman's ρ", "bootstrap interval", "zero-shot pruning", "random (criterion)", "keep ratio",
           "inverse-eigenvector", "FPGM", "PageRank")
queue, me = run_queue(), state.visitor()
spec = bundle.loaded.spec
session = st.session_state

with st.container(border=True):
    top = st.columns([3, 1, 1, 1])
    layers = bundle.prunable
    session.setdefault("imp_layer", spec.head_layer if spec.head_layer in layers else layers[0])  # or the atlas's
    layer = top[0].selectbox("Layer", layers, key="imp_layer",
                             help=f"{spec.head_layer}, which reaches the classifier through pooling, is measured "
                                  "exactly for every neuron in one operation on cached features; any other layer by a "
                                  "forward pass of the rest of the network per neuron, so on a sample of neurons.")
    seeds = forms.number_input_for(top[1], "Random seeds", ANALYSIS, "seeds", key="imp_seeds")
    sample = forms.number_input_for(top[2], "Neurons sampled", ANALYSIS, "sample_size", key="imp_sample",
                                    disabled=layer == spec.head_layer)
    image_size = launches.image_size_select(top[3], spec, key="imp_image_size")
    dataset = session["dataset"]
    root = launches.dataset_folder_input(dataset, key="imp_root")
    st.caption(f"On {dataset} (the sidebar's dataset), τ = {session['tau']:.2f} for the graph criteria, the split of "
               f"seed 0, a head trained for {BASELINE.epochs} epochs; the validation split measures every effect.")
    start = st.button("Analyse", type="primary", key="imp_start")

if start:
    try:
        launches.check_dataset_folder(dataset, root)
        config = replace(importance_config(backbone=key.backbone, dataset=dataset, root=root or None,
                                           image_size=image_size),
                         weights=key.weights, checkpoint=key.checkpoint or None)
        config.validate()
        analysis = replace(ANALYSIS, layer=layer, tau=session["tau"], seeds=seeds, sample_size=sample)
        analysis.validate(app=True)
        access = state.access()
        submitted = queue.submit_task(me, f"{layer} on {dataset}", lambda stop, progress: analyse_importance(
            config, **analysis.to_dict(), progress=progress, stop=stop, access=access), kind=KIND)
        launches.hold_checkpoint(key, submitted)
    except CPruneError as exc:
        st.error(plain(exc))


def _result(analysis) -> None:
    result = analysis.result
    st.info(plain(analysis.sentence))
    cells = st.columns(4)
    measured = (f"{len(result.neurons):,} of {result.n_neurons:,}" if result.sampled else f"all {result.n_neurons:,}")
    cells[0].metric("Neurons measured", measured, help="A sample, a forward pass each." if result.sampled else
                    "Exactly, in one operation on the cached pooled features.")
    cells[1].metric("Validation accuracy", f"{100 * result.full_acc:.1f}%", help="Of the trained head, nothing removed.")
    cells[2].metric("Validation loss", f"{result.full_loss:.4f}")
    cells[3].metric("Largest rise in loss", f"{result.delta_loss.max(initial=0.0):.4f}",
                    help="When one neuron is removed alone.")
    if result.sampled:
        st.caption(f"This is a sample: {len(result.neurons):,} of the {result.n_neurons:,} neurons of {result.layer}, "
                   "drawn with seed 0.")
    st.markdown("**Each criterion's score against the ablation effect** (Spearman's ρ, 95% bootstrap interval over "
                "neurons)")
    st.plotly_chart(charts.importance_scatter(analysis.scores, result.neurons, result.delta_loss,
                                              analysis.correlations),
                    key="imp_scatter", config=state.chart_config(f"importance-{result.layer}"))
    table = pd.DataFrame([{"criterion": c.criterion, "Spearman rho": c.spearman, "95% CI low": c.ci_low,
                           "95% CI high": c.ci_high} for c in analysis.correlations.values()])
    st.dataframe(table.sort_values("Spearman rho", ascending=False), hide_index=True,
                 column_config={name: st.column_config.NumberColumn(format="%+.3f")
                                for name in ("Spearman rho", "95% CI low", "95% CI high")})
    st.markdown("**Pruned with no fine-tuning: validation accuracy against keep ratio**")
    st.plotly_chart(charts.zero_shot_figure(analysis.curve), key="imp_curve",
                    config=state.chart_config(f"zero-shot-{result.layer}"))


def _analyses(view: VisitorView) -> None:
    if not launches.task_launches(view, KIND, "imp", _result):
        st.info("No analysis yet: choose a layer and press Analyse. The first one computes the dataset's features "
                "(a minute or more on a CPU); later ones reuse them.")


launches.live_launches("imp", KIND, draw=_analyses)
