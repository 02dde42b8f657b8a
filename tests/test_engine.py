"""Tests for cprune_core.engine and cprune_core.checkpoint on tiny data the tests write."""
from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from cprune_core.checkpoint import export_onnx, export_torchscript, load_model, save_model
from cprune_core.data import build_transform, load_dataset
from cprune_core.device import Precision, is_out_of_memory
from cprune_core.engine import finetune, run
from cprune_core.errors import CheckpointError, ConfigError, StopRequested
from cprune_core.evaluation import accuracy, evaluate_model
from cprune_core.features import FeatureCache, _contents_digest, extract_features
from cprune_core.progress import Steps
from cprune_core.pruning import PruningGraph
from cprune_core.schema import FinetuneConfig, MetricEvent


@pytest.fixture
def tiny_config(tiny_folder) -> FinetuneConfig:
    return FinetuneConfig(dataset="folder", dataset_root=str(tiny_folder), image_size=64, epochs=2, batch_size=4,
                          val_fraction=0.25, test_fraction=0.25, log_every=1, keep=0.25, lr=3e-3)


def kinds(history: list[MetricEvent]) -> list[str]:
    return [event.kind for event in history]


# ----------------------------------------------------------------------------- modes


def test_baseline_trains_only_a_new_head_and_reports_every_figure(tiny_config):
    result = run(replace(tiny_config, mode="baseline"))

    assert result.status == "finished", result.summary.message
    names = kinds(result.history)
    assert names[0] == "prepare" and names[-1] == "end" and "start" in names
    assert names.count("epoch") == 2 and names.count("step") == result.summary.total_steps == 2 * 3
    final = result.summary
    assert 0.0 <= final.test_acc <= 1.0 and final.val_acc is not None
    assert final.params > 3_000_000 and final.macs > 0 and final.latency_ms > 0
    assert final.n_images == {"train": 12, "val": 6, "test": 6} and final.n_skipped == 0
    assert result.model.classifier.out_features == 3 and result.kept == {}
    steps = [e for e in result.history if e.kind == "step"]
    assert steps[-1].progress == 1.0 and steps[-1].images_per_s > 0 and steps[-1].eta_s == 0
    assert [e.step for e in steps] == list(range(1, 7))


def test_pruned_mode_prunes_the_head_layer_and_trains_the_suffix(tiny_config):
    result = run(tiny_config)

    assert result.status == "finished", result.summary.message
    assert list(result.kept) == ["head.1"] and len(result.kept["head.1"]) == 320
    assert result.summary.kept == {"head.1": 320} and result.summary.channels == {"head.1": 1280}
    assert result.model.classifier.in_features == 320
    baseline = run(replace(tiny_config, mode="baseline"))
    assert result.summary.params < baseline.summary.params and result.summary.macs < baseline.summary.macs


def test_finetune_mode_trains_the_suffix_unpruned(tiny_config):
    result = run(replace(tiny_config, mode="finetune"))

    assert result.status == "finished" and result.kept == {}
    assert result.model.head[1].out_channels == 1280
    start = next(e for e in result.history if e.kind == "start")
    assert f"Training {320 * 1280 + 2 * 1280 + 1280 * 3 + 3:,} parameters" in start.message  # head conv, BN, classifier


def test_train_scope_all_prunes_every_layer_and_trains_on_images(tiny_config):
    config = replace(tiny_config, layers=["all"], train_scope="all", keep=0.75, epochs=1)
    result = run(config)

    assert result.status == "finished", result.summary.message
    assert len(result.kept) > 20
    assert not any(e.message.startswith("Computing") for e in result.history)  # no feature cache


def test_suffix_scope_refuses_to_prune_a_frozen_layer(tiny_config, lite0):
    prefix_layer = PruningGraph(lite0.model, lite0.spec).groups[0].root
    result = run(replace(tiny_config, layers=[prefix_layer]))

    assert result.status == "failed"
    assert "frozen prefix" in result.summary.message and "train_scope='all'" in result.summary.message


# ----------------------------------------------------------------------------- control


def test_stop_is_honoured_within_one_batch(tiny_config):
    stop = threading.Event()

    def stop_after_first_step(event):
        if event.kind == "step":
            stop.set()

    history = list(finetune(replace(tiny_config, mode="finetune", epochs=3), stop, stop_after_first_step))

    end = history[-1]
    assert end.kind == "end" and end.final.status == "stopped"
    assert end.final.steps_done == 1 < end.final.total_steps == 9
    assert end.final.test_acc is not None  # evaluated on the partially trained model


def test_a_stop_during_validation_ends_the_run_stopped_without_that_epoch(tiny_config):
    stop = threading.Event()

    def stop_at_the_last_step_of_epoch_one(event):
        if event.kind == "step" and event.step == 3:  # 12 training images, batches of 4: then validation runs
            stop.set()

    history = list(finetune(replace(tiny_config, mode="finetune"), stop, stop_at_the_last_step_of_epoch_one))
    final = history[-1].final
    assert (final.status, final.message) == ("stopped", "Stopped after 3 of 6 steps.")
    assert "epoch" not in kinds(history) and final.epochs_done == 0 and final.val_acc is None
    assert final.test_acc is not None and final.params > 0  # the partially trained model is measured


def test_a_stop_while_computing_features_ends_the_run_before_training(tiny_config):
    stop = threading.Event()

    def stop_at_the_first_batch(event):
        if event.message.startswith("Computing"):
            stop.set()

    history = list(finetune(tiny_config, stop, stop_at_the_first_batch, feature_cache=FeatureCache()))
    final = history[-1].final
    assert (final.status, final.message) == ("stopped", "Stopped while computing features.")
    assert "start" not in kinds(history) and final.test_acc is None and final.params is None


def test_feature_extraction_counts_images_before_every_batch_and_at_the_end():
    data = torch.utils.data.TensorDataset(torch.randn(40, 3, 8, 8), torch.arange(40) % 2)
    loader = torch.utils.data.DataLoader(data, batch_size=16)
    steps = Steps(extract_features(nn.Conv2d(3, 4, 3), loader, Precision(torch.device("cpu")), None, "train"))
    assert list(steps) == [(0, 40), (16, 40), (32, 40), (40, 40)]
    assert steps.result[0].shape == (40, 4, 6, 6)


def test_accuracy_raises_stop_requested_and_leaves_the_model_in_its_mode():
    model = torch.nn.Linear(2, 2).train()
    batches = [(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))]
    stop = threading.Event()
    stop.set()
    with pytest.raises(StopRequested):
        accuracy(model, batches, torch.device("cpu"), Precision(torch.device("cpu")), 2, stop)
    assert model.training
    assert accuracy(model, batches, torch.device("cpu"), Precision(torch.device("cpu")), 2) in (0.0, 1.0)


def test_same_config_and_seed_give_identical_history_on_cpu(tiny_config):
    def curve(result):
        return [(e.kind, e.step, e.train_loss, e.train_acc, e.val_acc) for e in result.history
                if e.kind in ("step", "epoch")]

    config = replace(tiny_config, device="cpu")
    first, second = run(config), run(config)
    assert curve(first) == curve(second) and first.summary.test_acc == second.summary.test_acc
    other_seed = run(replace(config, seed=1))
    assert curve(other_seed) != curve(first)


def test_frozen_features_are_computed_once_and_shared_by_baseline_and_pruned(tiny_config):
    cache = FeatureCache()
    first = list(finetune(replace(tiny_config, mode="baseline"), feature_cache=cache))
    second = list(finetune(tiny_config, feature_cache=cache))

    assert "Computing train features: 0 of 12 images" in [e.message for e in first]  # a counter of images
    assert not any(e.message.startswith("Computing") for e in second)
    assert len(cache) == 3  # train, val and test prefix features


def test_a_run_gives_the_same_numbers_whether_its_features_were_cached_or_not(tiny_config):
    """Computing features draws nothing from the global random generator, so training (dropout) after a
    cache miss is training after a hit: a run's numbers do not depend on what ran before it in the process."""
    def curve(events):
        return [(e.kind, e.step, e.train_loss, e.val_acc) for e in events if e.kind in ("step", "epoch")]

    config = replace(tiny_config, mode="finetune", device="cpu", epochs=1)
    cache = FeatureCache()
    computed = list(finetune(config, feature_cache=cache))
    cached = list(finetune(config, feature_cache=cache))
    assert any(e.message.startswith("Computing") for e in computed)
    assert not any(e.message.startswith("Computing") for e in cached)
    assert curve(cached) == curve(computed) and cached[-1].final.test_acc == computed[-1].final.test_acc


def test_feature_cache_round_trips_through_disk(tmp_path):
    value = torch.randn(5, 4, 2, 2), torch.arange(5)
    FeatureCache(disk_dir=tmp_path).put("k", value, disk=True)

    fresh = FeatureCache(disk_dir=tmp_path)
    assert fresh.get("k") is None  # memory only
    features, labels = fresh.get("k", disk=True)
    assert torch.equal(features, value[0]) and torch.equal(labels, value[1])
    assert not list(tmp_path.glob("*.tmp*"))


def test_disk_cache_serves_a_later_run_in_a_fresh_cache(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setenv("CPRUNE_HOME", str(tmp_path))
    config = replace(tiny_config, mode="baseline", epochs=1, disk_cache=True)
    first = list(finetune(config, feature_cache=FeatureCache()))
    second = list(finetune(config, feature_cache=FeatureCache()))

    assert len(list((tmp_path / "features").glob("*.pt"))) == 3
    assert any(e.message.startswith("Computing") for e in first)
    assert not any(e.message.startswith("Computing") for e in second)
    assert second[-1].final.test_acc == first[-1].final.test_acc


@pytest.mark.parametrize("tamper", ["shape", "labels", "garbage", "nan", "swapped labels", "swapped labels, re-signed",
                                    "another key"])
def test_a_tampered_disk_feature_file_is_recomputed_not_trusted(tiny_config, tmp_path, monkeypatch, tamper):
    monkeypatch.setenv("CPRUNE_HOME", str(tmp_path))
    config = replace(tiny_config, mode="baseline", epochs=1, disk_cache=True)
    first = list(finetune(config, feature_cache=FeatureCache()))
    for path in (tmp_path / "features").glob("*.pt"):
        if tamper == "garbage":
            path.write_bytes(b"not a tensor file")
            continue
        saved = torch.load(path, weights_only=True)
        features, labels, key = saved["features"], saved["labels"], saved["key"]
        if tamper == "shape":
            features = features[:, :8]
        elif tamper == "labels":
            labels = labels + 100
        elif tamper == "nan":
            features = features.clone().fill_(float("nan"))
        elif tamper == "another key":
            key = "0" * len(key)
        else:  # every label still one of the split's classes, in another order: well formed, and wrong
            labels = labels.flip(0)
        digest = _contents_digest(key, features, labels) if tamper.endswith(("re-signed", "key")) else saved["sha256"]
        torch.save({"features": features, "labels": labels, "key": key, "sha256": digest}, path)
    second = list(finetune(config, feature_cache=FeatureCache()))

    assert any(e.message.startswith("Computing") for e in second)
    assert second[-1].final.status == "finished" and second[-1].final.test_acc == first[-1].final.test_acc


def test_feature_cache_evicts_least_recently_used():
    cache = FeatureCache(max_bytes=2 * (16 * 4 + 8))
    for key in "abc":
        cache.put(key, (torch.zeros(16), torch.zeros(1, dtype=torch.long)))
    assert len(cache) == 2 and cache.get("a") is None and cache.get("c") is not None


@pytest.mark.parametrize("error", [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't allocate memory: you tried to "
                 "allocate 1099511627776 bytes. Error code 12 (Cannot allocate memory)"),
])
def test_out_of_memory_ends_the_run_with_the_batch_size_to_reduce(tiny_config, monkeypatch, error):
    def out_of_memory(self, loss, optimizer):
        raise error

    monkeypatch.setattr(Precision, "step", out_of_memory)
    end = list(finetune(replace(tiny_config, batch_size=8)))[-1]

    assert end.final.status == "failed" and end.final.error == "OutOfMemory"
    assert "memory at batch size 8" in end.final.message and "smaller batch size (e.g. 4)" in end.final.message


def test_a_real_cpu_allocation_failure_is_recognised():
    with pytest.raises(RuntimeError) as info:
        torch.empty(2**50, dtype=torch.uint8)  # a petabyte: refused at once, nothing allocated
    assert is_out_of_memory(info.value)


def test_an_empty_validation_split_gives_no_val_accuracy(tiny_config):
    result = run(replace(tiny_config, mode="baseline", val_fraction=0.0, epochs=1))
    assert result.status == "finished" and result.summary.val_acc is None and result.summary.test_acc is not None


def test_a_missing_dataset_ends_the_run_as_failed_with_the_reason(tiny_config, tmp_path):
    end = list(finetune(replace(tiny_config, dataset_root=str(tmp_path / "nowhere"))))[-1]
    assert end.kind == "end" and end.final.status == "failed" and "not found" in end.final.message


@pytest.mark.parametrize("change, message", [
    ({"keep": 0.0}, "keep must be in (0, 1]"), ({"keep": 1.5}, "keep must be in (0, 1]"),
    ({"epochs": 0}, "epochs must be"), ({"tau": 1.0}, "tau must be in [0, 1)"),
    ({"backbone": "alexnet"}, "Unknown backbone 'alexnet'"), ({"mode": "magic"}, "Unknown mode"),
    ({"criterion": "size"}, "Unknown criterion"), ({"batch_size": 0}, "batch_size must be"),
    ({"weights": "checkpoint"}, "needs a checkpoint file"),
])
def test_impossible_values_are_refused_before_running(change, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        finetune(replace(FinetuneConfig(), **change))


def test_config_round_trips_through_a_dict():
    config = FinetuneConfig(mode="finetune", layers=["head.1"], epochs=3)
    assert FinetuneConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="Unknown FinetuneConfig field"):
        FinetuneConfig.from_dict({"epoch": 3})


# ----------------------------------------------------------------------------- save, reload, export


def test_saved_model_reloads_with_the_same_test_accuracy(tiny_config, tmp_path):
    result = run(tiny_config)
    save_model(result, tmp_path / "model")

    saved = load_model(tmp_path / "model")
    assert saved.info["kept"] == result.kept and saved.classes == ["blue", "green", "red"]
    splits = load_dataset("folder", tiny_config.dataset_root, val_fraction=0.25, test_fraction=0.25)
    transform = build_transform(64, saved.info["mean"], saved.info["std"], train=False)
    reports = []
    evaluation = evaluate_model(saved.model, splits.test, transform, batch_size=4,
                                progress=lambda done, total, message: reports.append((done, total)))
    assert reports == [(0, 6), (4, 6), (6, 6)]  # before the first batch, then after each
    assert evaluation.accuracy == pytest.approx(result.summary.test_acc) == pytest.approx(saved.info["test_acc"])
    assert sum(total for _, total in evaluation.per_class.values()) == 6
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(saved.model(x), result.model.eval()(x), atol=1e-5)


def test_load_model_explains_a_directory_that_is_not_a_model(tmp_path):
    with pytest.raises(CheckpointError, match="not a saved model directory"):
        load_model(tmp_path)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_onnx_and_torchscript_exports_load_and_agree(tiny_config, tmp_path):
    result = run(replace(tiny_config, epochs=1))
    model = result.model.eval()
    x = torch.randn(1, 3, 64, 64)

    onnx_path = export_onnx(model, tmp_path / "model.onnx", 64)
    onnx.checker.check_model(str(onnx_path))
    scripted = torch.jit.load(str(export_torchscript(model, tmp_path / "model.ts", 64)))
    assert torch.allclose(scripted(x), model(x), atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.ts"]  # no temporary left


# ----------------------------------------------------------------------------- real accuracy


@pytest.mark.slow
def test_pretrained_baseline_on_the_flowers_sample_is_well_above_chance():
    # The offline default backbone and data; 160 px and no validation split halve the feature pass,
    # and head epochs on cached features are nearly free.
    config = FinetuneConfig(mode="baseline", dataset="flowers-sample", image_size=160, val_fraction=0.0,
                            epochs=10, lr=3e-3)
    result = run(config)
    assert result.status == "finished"
    assert result.summary.test_acc > 0.5  # chance is 0.2 (5 classes)


def test_a_visitors_run_downloads_no_weights_when_the_server_says_so(tiny_config, tmp_path, monkeypatch):
    """The sidebar offers only cached weights when CPRUNE_DOWNLOADS is off; the run itself enforces it too (a
    launch made before the setting changed, or by a crafted request), where the download would start."""
    from dataclasses import replace as replace_spec

    from cprune_core import BACKBONES
    from cprune_server import visitor_access

    build, fetched = BACKBONES["resnet18"].build, []
    monkeypatch.setitem(BACKBONES, "resnet18", replace_spec(BACKBONES["resnet18"],
                                                            build=lambda pretrained: fetched.append(pretrained)
                                                            or build(False)))
    monkeypatch.setenv("CPRUNE_DOWNLOADS", "off")
    monkeypatch.setenv("CPRUNE_DATA_ROOTS", str(Path(tiny_config.dataset_root).resolve()))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # nothing cached
    config = replace(tiny_config, backbone="resnet18", mode="baseline", epochs=1)
    visitor = list(finetune(config, access=visitor_access("a visitor")))
    assert visitor[-1].final.status == "failed" and "downloads are off" in visitor[-1].final.message
    assert fetched == []
    command_line = list(finetune(config))  # the command line (no data roots) still asks for them
    assert fetched == [True] and command_line[-1].final.status == "finished"
