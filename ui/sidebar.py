"""The sidebar every page shares: backbone and its weights, dataset, device, shareable link."""
from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from cprune_core import (BACKBONES, DATASETS, CheckpointError, WeightsUnavailableError, describe_device, get_spec,
                         resolve_device)
from cprune_core.data import NO_VISITOR_DOWNLOADS, get_source, is_cached, visitor_downloads
from cprune_core.registry import WEIGHT_SOURCES, weights_cache_path

from . import state
from .cache import ModelBundle, ModelKey, model_bundle
from .services import run_queue, uploads
from .text import plain

__all__ = ["WEIGHT_LABELS", "render", "require_model", "require_layer"]

WEIGHT_LABELS = {"pretrained": "pretrained", "random": "random init", "checkpoint": "checkpoint (upload)"}


def _weights_cached(backbone: str) -> bool:
    path = weights_cache_path(get_spec(backbone))
    return path is None or path.is_file()


def _use_random_weights() -> None:
    st.session_state["weights"] = "random"


def _weight_sources(backbone: str) -> list[str]:
    """The weights this server offers for ``backbone``: not pretrained ones it would have to download when
    downloads are off (then a sentence says why, and a choice of them is changed to random init)."""
    if visitor_downloads() or _weights_cached(backbone):
        return list(WEIGHT_SOURCES)
    st.caption(f"{NO_VISITOR_DOWNLOADS}, and the ImageNet weights of {get_spec(backbone).title} are not in its cache: "
               "random init or your own checkpoint.")
    if st.session_state["weights"] == "pretrained":
        st.session_state["weights"] = "random"
    return [source for source in WEIGHT_SOURCES if source != "pretrained"]


def _dataset_note(dataset: str) -> None:
    """Say so when ``dataset`` would need a download this server will not make."""
    if not visitor_downloads() and get_source(dataset).needs_download and not is_cached(dataset):
        st.caption(f"{NO_VISITOR_DOWNLOADS}, and {dataset} is not in its dataset cache: type the folder that holds it, "
                   "inside the server's data folders, where you start a run.")


def render() -> None:
    """Draw the sidebar and load the chosen model into st.session_state["model_key"]
    (None, with the reason shown, when it cannot be loaded)."""
    sidebar = st.sidebar
    st.session_state.setdefault("weights", state.CONFIG_DEFAULTS.weights)
    st.session_state.setdefault("dataset", state.CONFIG_DEFAULTS.dataset)
    with sidebar:
        backbone = state.bound(st.selectbox, "backbone", "Backbone", options=list(BACKBONES),
                               format_func=lambda name: BACKBONES[name].title)
        weights = st.radio("Weights", _weight_sources(backbone), format_func=WEIGHT_LABELS.get, key="weights",
                           horizontal=True)
        key = ModelKey(backbone, weights)
        uploads().collect(every_s=30)  # files of sessions that have gone: not only when someone uploads
        run_queue().attend(state.visitor(), get_script_run_ctx().session_id)  # this visitor's launches may wait
        if weights == "checkpoint":
            upload = st.file_uploader("State dict (.pt/.pth)", key="checkpoint_upload",
                                      help="torch.save(model.state_dict(), path) of this backbone; read with "
                                           "weights_only=True.")
            if upload is None:
                st.info("Upload a checkpoint of the chosen backbone, or choose other weights.")
                key = None
            else:
                key = _keep_upload(backbone, upload)
        st.session_state["model_key"] = key and _load(key)
        st.selectbox("Dataset", list(DATASETS), key="dataset", help=DATASETS[st.session_state["dataset"]].description)
        _dataset_note(st.session_state["dataset"])
        st.caption(f"Device in use: **{describe_device(resolve_device('auto'))}**")
        st.radio("Chart downloads", state.CHART_FORMATS, format_func=str.upper, key="chart_format", horizontal=True,
                 help="The camera button above each chart saves it in this format (drawn in your browser).")
        st.caption("Share this view: the page's URL holds the backbone, layer, τ, criterion and keep ratio.")
        for problem in st.session_state.pop("url_rejected", []):
            st.warning(f"Ignored a link parameter ({plain(problem)}); using the default.")


def _keep_upload(backbone: str, upload) -> ModelKey | None:
    """The uploaded checkpoint kept for this session (None, with the reason shown, when refused). A file is
    hashed, written and checked once: later reruns with the same upload reuse the verdict."""
    session = get_script_run_ctx().session_id
    seen = st.session_state.get("_checkpoint_seen")
    if seen is not None and seen["file_id"] == upload.file_id and seen["backbone"] == backbone:
        if seen["refused"]:  # its contents were refused: they will not change
            st.error(seen["refused"])
            return None
        if uploads().hold(Path(seen["path"]), session):  # still kept (a session that dropped a while may lose it)
            return ModelKey(backbone, "checkpoint", seen["path"])
    st.session_state.pop("_checkpoint_seen", None)
    try:
        path = str(uploads().add(session, upload.name, upload.getvalue()))
    except CheckpointError as exc:  # too large, or no space left for now: asked again at the next run
        st.error(plain(exc))
        return None
    st.session_state["_checkpoint_seen"] = {"file_id": upload.file_id, "backbone": backbone, "refused": "",
                                            "path": path}
    return ModelKey(backbone, "checkpoint", path)


def _load(key: ModelKey) -> ModelKey | None:
    spec = get_spec(key.backbone)
    if key.weights == "pretrained" and not _weights_cached(key.backbone) and visitor_downloads():
        message = f"Downloading the ImageNet weights of {spec.title} from {spec.weights_url} …"
    else:
        message = f"Loading {spec.title} …"
    try:
        with st.spinner(message):
            bundle = model_bundle(key)
    except WeightsUnavailableError as exc:
        st.error(plain(exc))
        st.button("Use random init instead", on_click=_use_random_weights)
        return None
    except CheckpointError as exc:  # refused: the file goes at once, and this upload is not read again
        uploads().reject(Path(key.checkpoint), get_script_run_ctx().session_id)
        seen = st.session_state.get("_checkpoint_seen")
        if seen is not None and seen["path"] == key.checkpoint:
            seen["refused"] = plain(exc)
        st.error(plain(exc))
        return None
    status = bundle.loaded.weights_status
    st.caption(f"Weights: **{plain(status)}**" + ("" if bundle.loaded.pretrained else " (untrained: graphs show "
                                                                                        "structure of random weights)"))
    return key


def require_model() -> tuple[ModelKey, ModelBundle]:
    """The loaded model of the sidebar's choice; stops the page with a message if there is none."""
    key = st.session_state.get("model_key")
    if key is None:
        st.info("No model is loaded: fix the choice in the sidebar (the message there says how).")
        st.stop()
    return key, model_bundle(key)


def require_layer(bundle: ModelBundle, prunable_only: bool = False) -> str:
    """The shared layer, reset to the backbone's head layer when it is not one of this model's."""
    options = bundle.prunable if prunable_only else bundle.layer_names
    head = bundle.loaded.spec.head_layer
    wanted = st.session_state["layer"]
    if state.ensure_choice("layer", options, head if head in options else options[0]) and wanted:
        st.caption(f"Layer {plain(repr(wanted))} is not {'a prunable' if prunable_only else 'a'} layer of this "
                   f"model; showing {st.session_state['layer']}.")
    return st.session_state["layer"]
