"""Fine-tune: train the conventional baseline and the pruned model in a background worker."""
import pandas as pd
import streamlit as st

from cprune_core import CPruneError, FinetuneConfig
from cprune_core.schema import MODES, TRAIN_SCOPES, RunStatus
from cprune_server import FINETUNE, Launch, LaunchState, Track, VisitorView
from ui import charts, forms, frame, launches, sidebar, state
from ui.glossary import terms_here
from ui.services import run_queue
from ui.text import plain

MODE_LABELS = {"baseline": "baseline (frozen backbone, new head)", "pruned": "pruned, then fine-tuned",
               "finetune": "fine-tuned, nothing pruned"}
DEFAULTS = FinetuneConfig()
# A fine-tune in front of a class: small images, few of them (docs/benchmarks.md, "The lecture preset", measures it).
LECTURE = FinetuneConfig(image_size=128, train_per_class=30, epochs=5, train_scope="suffix")

frame.start("Fine-tune",
            "Replace the ImageNet head with one for the chosen dataset and train. The baseline trains only the head; "
            "the pruned model is pruned with the settings of the Prune page, then fine-tuned. Runs go on in the "
            "background: switch pages and come back. They belong to this browser (every tab of it, after a reload "
            "too); every finished run is also on the Results page.")

key, bundle = sidebar.require_backbone()
session = st.session_state
spec = bundle.loaded.spec
layer = session["layer"] if session["layer"] in bundle.prunable else spec.head_layer
terms_here("baseline", "pruned run", "fine-tune", "suffix (train scope)", "epoch", "test, validation, training split",
           "params", "MACs")


def _lecture() -> None:
    """The lecture preset's settings, put into the form's widgets."""
    session.update(ft_image_size=LECTURE.image_size, ft_per_class=LECTURE.train_per_class, ft_epochs=LECTURE.epochs,
                   ft_train_scope=LECTURE.train_scope)


sizes = [size for size in range(32, 2 * spec.input_size + 1, 32) if size in spec.input_sizes]
with st.container(border=True):
    top = st.columns([3, 2])
    modes = top[0].multiselect("Runs", MODES, default=["baseline", "pruned"], format_func=MODE_LABELS.get,
                               key="ft_modes", help=forms.help_for(FinetuneConfig, "mode"))
    scope = top[1].radio("Prune", [f"layer {layer}", "all prunable layers"], key="ft_scope", horizontal=True)
    st.caption(f"Pruning: criterion **{session['criterion']}**, keep ratio **{session['keep']:.2f}**, "
               f"τ **{session['tau']:.2f}** (change them on the Prune page).")
    preset = st.columns([2, 5], vertical_alignment="center")
    preset[0].button("Lecture: under a minute on a laptop", key="ft_lecture", on_click=_lecture,
                     disabled=LECTURE.image_size not in sizes)
    preset[1].caption(f"Sets {LECTURE.image_size} px images, {LECTURE.train_per_class} training images per class and "
                      f"{LECTURE.epochs} epochs of the suffix: a baseline and a pruned run of EfficientNet-Lite0 took "
                      "8 s together on one thread of a busy 2-core machine (docs/benchmarks.md). Accuracy is lower "
                      "than at full size.")
    cells = st.columns(6)
    epochs = forms.number_input_for(cells[0], "Epochs", DEFAULTS, "epochs", key="ft_epochs")
    batch_sizes = forms.choices_within(FinetuneConfig, "batch_size", [2 ** k for k in range(13)])
    batch_size = cells[1].selectbox("Batch size", batch_sizes, index=batch_sizes.index(DEFAULTS.batch_size),
                                    key="ft_batch", help=forms.help_for(FinetuneConfig, "batch_size"))
    rates = forms.choices_within(FinetuneConfig, "lr", sorted({1e-4, 3e-4, 1e-3, 3e-3, 1e-2, DEFAULTS.lr}))
    lr = cells[2].selectbox("Learning rate", rates, index=rates.index(DEFAULTS.lr), key="ft_lr",
                            format_func=lambda v: f"{v:g}", help=forms.help_for(FinetuneConfig, "lr"))
    image_size = cells[3].selectbox("Image size", sizes, key="ft_image_size",
                                    **forms.unless_set("ft_image_size", index=sizes.index(spec.input_size)),
                                    help="Smaller images train faster on a CPU. "
                                         + forms.help_for(FinetuneConfig, "image_size"))
    train_scope = cells[4].radio("Train", TRAIN_SCOPES, key="ft_train_scope",
                                 **forms.unless_set("ft_train_scope", index=TRAIN_SCOPES.index(DEFAULTS.train_scope)),
                                 help=forms.help_for(FinetuneConfig, "train_scope"))
    per_class = forms.number_input_for(cells[5], "Images per class (0: all)", DEFAULTS, "train_per_class",
                                       key="ft_per_class")
    dataset = session["dataset"]
    root = launches.dataset_folder_input(dataset, key="ft_root")
    start = st.button("Start", type="primary", key="ft_start", disabled=not modes)


def _configs() -> dict[str, FinetuneConfig]:
    common = dict(backbone=key.backbone, weights=key.weights, checkpoint=key.checkpoint or None, dataset=dataset,
                  dataset_root=root or None, criterion=session["criterion"], keep=session["keep"],
                  tau=session["tau"], layers=[layer] if scope.startswith("layer") else ["all"],
                  train_scope=train_scope, epochs=epochs, batch_size=batch_size, lr=lr,
                  image_size=image_size, train_per_class=per_class)
    configs = {mode: FinetuneConfig(mode=mode, **common) for mode in modes}
    for config in configs.values():
        config.validate(app=True)
    return configs


if start:
    try:
        launches.check_dataset_folder(dataset, root)
        submitted = run_queue().submit(state.visitor(), _configs())
        launches.hold_checkpoint(key, submitted)
    except CPruneError as exc:
        st.error(plain(exc))


def _status(launch: Launch, track: Track) -> None:
    last = track.events[-1] if track.events else None
    final = track.final
    if final is None and not track.events and launch.state == LaunchState.ENDED:  # ended before this run began
        st.caption(f"**{track.label}** · {launches.not_started(launch)}")
        return
    if last is None:  # its launch waits in the queue, or an earlier run of the launch goes first
        st.progress(0.0, text=f"**{track.label}** · waiting")
        return
    if final is None:
        parts = [f"epoch {last.epoch}" if last.epoch else "preparing",
                 f"ETA {last.eta_s:.0f} s" if last.eta_s is not None else "",
                 f"{last.images_per_s:.0f} images/s" if last.images_per_s else "", plain(last.message)]
        st.progress(min(max(last.progress, 0.0), 1.0), text=f"**{track.label}** · " + " · ".join(p for p in parts if p))
        return
    if final.status == RunStatus.FAILED:
        st.error(f"**{track.label}** failed: {plain(final.message)}")
    elif final.status == RunStatus.STOPPED:
        st.warning(f"**{track.label}** stopped after {final.steps_done} of {final.total_steps} steps." if
                   final.total_steps else f"**{track.label}** stopped before training began.")
    else:
        st.progress(1.0, text=f"**{track.label}** finished in {final.duration_s:.0f} s")


def _launch_view(launch: Launch, position: int | None) -> None:
    with st.container(border=True):
        launches.launch_header(launch, position, key="ft")
        for track in launch.tracks:
            _status(launch, track)
        curves = pd.concat([charts.curve_points(t.label, t.events, t.config.epochs) for t in launch.tracks])
        if not curves.empty:
            modes = {t.label: t.config.mode for t in launch.tracks}
            st.plotly_chart(charts.training_curves(curves, modes), key=f"ft_curves_{launch.id}",
                            config=state.chart_config("ft_curves"))
        # Latency is left out: each run times itself once, at its end, under whatever else the machine does then
        # (the Prune page times the unpruned and the pruned model in turns, with their spread).
        finished = [dict(run=t.label, status=str(t.final.status),
                         test_acc=None if t.final.test_acc is None else 100 * t.final.test_acc, params=t.final.params,
                         macs=t.final.macs, image_size=t.config.image_size or spec.input_size,
                         duration_s=t.final.duration_s)
                    for t in launch.tracks if t.final]
        if finished:
            st.dataframe(pd.DataFrame(finished), hide_index=True, key=f"ft_table_{launch.id}",
                         column_config={"test_acc": st.column_config.NumberColumn("test accuracy (%)", format="%.1f"),
                                        "params": st.column_config.NumberColumn(format="localized"),
                                        "macs": st.column_config.NumberColumn("MACs per image", format="localized"),
                                        "image_size": st.column_config.NumberColumn("image size (px)"),
                                        "duration_s": st.column_config.NumberColumn("duration (s)", format="%.0f")})


grace_s = run_queue().limits.grace_s


def _runs(view: VisitorView) -> None:
    st.caption(f"On this server now: {view.running} launch(es) running, {view.queued} waiting. Launches you start "
               "here are yours: only this browser sees their progress and can stop them; finished runs are also "
               f"on the Results page. When every tab of this browser has been closed for {grace_s:g} s, your "
               "waiting launches leave the queue; a running one goes on to its end.")
    runs = view.of_kind(FINETUNE)  # analyses have their own pages
    if not runs:
        st.info("You have no runs yet: choose the runs above and press Start.")
    for launch in runs:
        _launch_view(launch, view.positions.get(launch.id))


st.subheader("Your runs")
launches.live_launches("ft", FINETUNE, draw=_runs)
