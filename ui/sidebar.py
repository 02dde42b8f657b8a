"""The sidebar every page shares: the model (a registry backbone and its weights, or a weights file to explore),
dataset, device, shareable link."""
from __future__ import annotations

import os
from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from cprune_core import (BACKBONES, DATASETS, DEFAULT_BACKBONE, CheckpointError, CPruneError, WeightsUnavailableError, describe_device,
                         get_spec, resolve_device)
from cprune_core.access import NO_DOWNLOADS
from cprune_core.data import get_source, is_cached
from cprune_core.data.roots import is_inside
from cprune_core.registry import MAX_CHECKPOINT_BYTES, WEIGHT_SOURCES, weights_cache_path
from cprune_core.weights import EXTENSIONS, find_models
from cprune_server import downloads_allowed
from cprune_server.settings import setting

from . import state
from .cache import FileBundle, FileKey, ModelBundle, ModelKey, SourceKey, bundle_of, file_bundle, model_bundle
from .services import run_queue, uploads
from .text import plain

__all__ = ["WEIGHT_LABELS", "MODEL_KINDS", "EXPLORE_ONLY", "render", "offer_backbones", "require_model",
           "require_backbone", "require_layer"]

WEIGHT_LABELS = {"pretrained": "pretrained", "random": "random init", "checkpoint": "checkpoint (upload)"}
MODEL_KINDS = {"backbone": "a registry backbone", "file": "a weights file (explore only)"}
FILE_SOURCES = {"upload": "your upload", "server": "this server's model folders"}
FILE_TYPES = [extension.lstrip(".") for extension in EXTENSIONS]
CHECKPOINT_SLOT, FILE_SLOT = "_checkpoint_seen", "_weights_file_seen"  # this session's upload and its verdict
ADOPTED = "adopted"  # the file_id of a weights file taken as a backbone's checkpoint (no upload widget holds it)
EXPLORE_ONLY = "Pruning and fine-tuning stay with the registry backbones: a weights file is only explored."


def _weights_cached(backbone: str) -> bool:
    path = weights_cache_path(get_spec(backbone))
    return path is None or path.is_file()


def _use_random_weights() -> None:
    st.session_state["weights"] = "random"


def _weight_sources(backbone: str) -> list[str]:
    """The weights this server offers for ``backbone``: not pretrained ones it would have to download when
    downloads are off (then a sentence says why, and a choice of them is changed to random init)."""
    if downloads_allowed() or _weights_cached(backbone):
        return list(WEIGHT_SOURCES)
    st.caption(f"{NO_DOWNLOADS}, and the ImageNet weights of {get_spec(backbone).title} are not in its cache: "
               "random init or your own checkpoint.")
    if st.session_state["weights"] == "pretrained":
        st.session_state["weights"] = "random"
    return [source for source in WEIGHT_SOURCES if source != "pretrained"]


def _dataset_note(dataset: str) -> None:
    """Say so when ``dataset`` would need a download this server will not make."""
    if not downloads_allowed() and get_source(dataset).needs_download and not is_cached(dataset):
        st.caption(f"{NO_DOWNLOADS}, and {dataset} is not in its dataset cache: type the folder that holds it, "
                   "inside the server's data folders, where you start a run.")


def render() -> None:
    """Draw the sidebar and load the chosen model into st.session_state["model_key"] (a ModelKey or a FileKey;
    None, with the reason shown, when it cannot be loaded)."""
    st.session_state.setdefault("weights", state.CONFIG_DEFAULTS.weights)
    st.session_state.setdefault("dataset", state.CONFIG_DEFAULTS.dataset)
    st.session_state.setdefault("model_kind", "backbone")
    with st.sidebar:
        uploads().collect(every_s=30)  # files of sessions that have gone: not only when someone uploads
        run_queue().attend(state.visitor(), get_script_run_ctx().session_id)  # this visitor's launches may wait
        kind = st.radio("Model", list(MODEL_KINDS), format_func=MODEL_KINDS.get, key="model_kind",
                        help="A registry backbone can be explored, pruned and fine-tuned; any weights file "
                             "(.safetensors, ONNX, a PyTorch state dict) can be explored, layer by layer, and so "
                             "can the models in this server's model folders (of any size: checkpoint shards too).")
        key = _choose_backbone() if kind == "backbone" else _choose_file()
        st.session_state["model_key"] = key and _load(key)
        st.selectbox("Dataset", list(DATASETS), key="dataset", help=DATASETS[st.session_state["dataset"]].description)
        _dataset_note(st.session_state["dataset"])
        st.caption(f"Device in use: **{describe_device(resolve_device('auto'))}**")
        st.radio("Chart downloads", state.CHART_FORMATS, format_func=str.upper, key="chart_format", horizontal=True,
                 help="The camera button above each chart saves it in this format (drawn in your browser).")
        st.caption("Share this view: the page's URL holds the backbone, layer, τ, criterion and keep ratio (never "
                   "an uploaded file or its layers).")
        for problem in st.session_state.pop("url_rejected", []):
            st.warning(f"Ignored a link parameter ({plain(problem)}); using the default.")


def _choose_backbone() -> ModelKey | None:
    # Titles without their note ("EfficientNet-Lite0 (offline default)" is cut off in the sidebar's width).
    backbone = state.bound(st.selectbox, "backbone", "Backbone", options=list(BACKBONES),
                           format_func=lambda name: BACKBONES[name].title.split(" (")[0],
                           help=f"{BACKBONES[DEFAULT_BACKBONE].title.split(' (')[0]} is the offline default: its "
                                "ImageNet weights come with CPrune; the others' are downloaded on first use.")
    weights = st.radio("Weights", _weight_sources(backbone), format_func=WEIGHT_LABELS.get, key="weights",
                       horizontal=True)
    if weights != "checkpoint":
        return ModelKey(backbone, weights)
    upload = st.file_uploader("Checkpoint (.pt, .pth, .safetensors)", key="checkpoint_upload",
                              help="torch.save(model.state_dict(), path) of this backbone, or its safetensors; read "
                                   "with weights_only=True.")
    if upload is not None:
        path = _keep_upload(CHECKPOINT_SLOT, upload, backbone)
        return path and ModelKey(backbone, "checkpoint", path)
    adopted = st.session_state.get(CHECKPOINT_SLOT)
    if (adopted is not None and adopted["file_id"] == ADOPTED and adopted["for"] == backbone
            and uploads().hold(Path(adopted["path"]), get_script_run_ctx().session_id)):
        st.caption(f"Checkpoint: your weights file {plain(adopted['name'])}. Upload another to replace it.")
        return ModelKey(backbone, "checkpoint", adopted["path"])
    st.info("Upload a checkpoint of the chosen backbone, or choose other weights.")
    return None


def _choose_file() -> FileKey | None:
    if model_roots() and st.radio("From", list(FILE_SOURCES), format_func=FILE_SOURCES.get, key="file_source",
                                  horizontal=True) == "server":
        return _choose_server_model()
    upload = st.file_uploader("Weights file", type=FILE_TYPES, key="weights_file_upload",
                              help="A .safetensors file, an ONNX model or a PyTorch state dict (.pt, .pth, .bin; "
                                   f"read with weights_only=True), up to {MAX_CHECKPOINT_BYTES // 2**20} MiB: every "
                                   "floating-point weight of rank 2 to 5 is a layer to explore (a TorchScript .jit "
                                   "file is told how to save its state dict). It stays private to you, and is "
                                   "deleted when you leave.")
    if upload is None:
        st.info("Upload a weights file to explore its layers, or choose a registry backbone.")
        return None
    path = _keep_upload(FILE_SLOT, upload, "")
    return path and FileKey(path, upload.name)


def model_roots() -> tuple[Path, ...]:
    """The server's model folders (CPRUNE_MODEL_ROOTS), resolved (links followed); none when unset."""
    return tuple(Path(os.path.realpath(root)) for root in setting("CPRUNE_MODEL_ROOTS"))


@st.cache_data(ttl=60, show_spinner=False)
def _server_models(roots: tuple[Path, ...]) -> dict[str, str]:
    """Name for people -> real path of every model under ``roots`` (looked for again after a minute)."""
    return {label: str(path) for label, path in find_models(roots)}


def _choose_server_model() -> FileKey | None:
    roots = model_roots()
    models = _server_models(roots)
    if not models:
        st.info("No model was found in this server's model folders; choose a registry backbone or upload a file.")
        return None
    label = st.selectbox("Model on this server", list(models), key="server_model",
                         help="A Hugging Face checkpoint folder (its index and shards), a folder of safetensors "
                              "files, an ONNX model with its external data or a weights file, from the folders the "
                              "server offers (CPRUNE_MODEL_ROOTS): listed from their headers, a layer read when shown.")
    if not is_inside(models[label], roots):  # changed since it was listed: a link now leading elsewhere
        st.error("That model is no longer in this server's model folders.")
        return None
    return FileKey(models[label], label, on_server=True)


def _keep_upload(slot: str, upload, purpose: str) -> str | None:
    """The path of ``upload`` kept for this session (None, with the reason shown, when refused), for ``purpose``
    (a backbone's checkpoint, or "" for a weights file to explore). A file is hashed, written and checked
    once: later reruns with the same upload reuse the verdict kept in ``st.session_state[slot]``."""
    session = get_script_run_ctx().session_id
    seen = st.session_state.get(slot)
    if seen is not None and seen["file_id"] == upload.file_id and seen["for"] == purpose:
        if seen["refused"]:  # its contents were refused: they will not change
            st.error(seen["refused"])
            return None
        if uploads().hold(Path(seen["path"]), session):  # still kept (a session that dropped a while may lose it)
            return seen["path"]
    st.session_state.pop(slot, None)
    try:
        path = str(uploads().add(session, upload.name, upload.getvalue()))
    except CheckpointError as exc:  # too large, or no space left for now: asked again at the next run
        st.error(plain(exc))
        return None
    st.session_state[slot] = {"file_id": upload.file_id, "for": purpose, "refused": "", "path": path,
                              "name": upload.name}
    return path


def _refuse(path: str, error: CPruneError) -> None:
    """An upload's contents were refused: the file goes at once, and this upload is not read again. The message
    names the file as the visitor named it, not as it is stored (its content's digest first)."""
    uploads().reject(Path(path), get_script_run_ctx().session_id)
    records = [seen for slot in (CHECKPOINT_SLOT, FILE_SLOT)
               if (seen := st.session_state.get(slot)) is not None and seen["path"] == path]
    stored = Path(path).name
    message = plain(str(error).replace(stored, records[0]["name"] if records else stored))
    for seen in records:
        seen["refused"] = message
    st.error(message)


def _load(key: SourceKey) -> SourceKey | None:
    if isinstance(key, FileKey):
        return _load_file(key)
    spec = get_spec(key.backbone)
    if key.weights == "pretrained" and not _weights_cached(key.backbone) and downloads_allowed():
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
    except CheckpointError as exc:
        _refuse(key.checkpoint, exc)
        return None
    status = bundle.loaded.weights_status
    st.caption(f"Weights: **{plain(status)}**" + ("" if bundle.loaded.pretrained else " (untrained: graphs show "
                                                                                        "structure of random weights)"))
    return key


def _load_file(key: FileKey) -> FileKey | None:
    try:
        with st.spinner(f"Reading {plain(key.name)} …"):
            bundle = file_bundle(key)
    except CPruneError as exc:  # not what it says, damaged, over budget, no float layer, NaN or Inf
        if key.on_server:  # the server's own model: kept, never deleted
            st.error(plain(exc))
        else:
            _refuse(key.path, exc)
        return None
    st.caption(f"**{plain(key.name)}**: {len(bundle.layers):,} layers ({bundle.weights.description}), explore "
               "only.")
    if bundle.skipped:
        with st.expander(f"{len(bundle.skipped):,} tensors are not layers"):
            st.text("\n".join(f"{name}: {why}" for name, why in bundle.skipped))  # plain text, names escaped
    offer_backbones(key, bundle, "sidebar")
    return key


def _adopt(backbone: str, key: FileKey) -> None:
    st.session_state["model_kind"] = "backbone"
    state.set_value("backbone", backbone)
    st.session_state["weights"] = "checkpoint"
    st.session_state[CHECKPOINT_SLOT] = {"file_id": ADOPTED, "for": backbone, "refused": "", "path": key.path,
                                         "name": key.name}


def offer_backbones(key: FileKey, bundle: FileBundle, where: str) -> None:
    """For each registry backbone whose checkpoint the file is (its names and shapes fit), a sentence and a
    button that loads it as that backbone's checkpoint, to prune and fine-tune. ``where`` keys the buttons."""
    for backbone in bundle.fits:
        st.caption(f"This file fits {backbone}: use it as {backbone}'s checkpoint to prune and fine-tune it.")
        st.button(f"Use it as {backbone}'s checkpoint", key=f"adopt_{where}_{backbone}", on_click=_adopt,
                  args=(backbone, key))


def require_model() -> tuple[SourceKey, ModelBundle | FileBundle]:
    """The loaded model of the sidebar's choice (a backbone or a weights file); stops the page with a message if
    there is none."""
    key = st.session_state.get("model_key")
    if key is None:
        st.info("No model is loaded: fix the choice in the sidebar (the message there says how).")
        st.stop()
    return key, bundle_of(key)


def require_backbone() -> tuple[ModelKey, ModelBundle]:
    """``require_model`` for the pages that prune, fine-tune or measure: with a weights file, the page says that
    those stay with the registry backbones, offers the backbone the file fits (if any), and stops."""
    key, loaded = require_model()
    if isinstance(key, FileKey):
        st.info(EXPLORE_ONLY + " Choose a registry backbone under Model in the sidebar.")
        offer_backbones(key, loaded, "page")
        st.stop()
    return key, loaded


def require_layer(loaded: ModelBundle | FileBundle, prunable_only: bool = False) -> str:
    """The shared layer (``state.layer_key()``: a backbone's, or a weights file's), reset to the model's default
    layer when it is not one of this model's."""
    name = state.layer_key()
    options = loaded.prunable if prunable_only else loaded.layer_names
    default = loaded.default_layer
    wanted = st.session_state.setdefault(name, "")
    if state.ensure_choice(name, options, default if default in options else options[0]) and wanted:
        st.caption(f"Layer {plain(repr(wanted))} is not {'a prunable' if prunable_only else 'a'} layer of this "
                   f"model; showing {plain(st.session_state[name])}.")
    return st.session_state[name]
