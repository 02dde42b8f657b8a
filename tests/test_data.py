"""Tests for cprune_core.data: every loader on small data in its real on-disk layout."""
from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.datasets import Flowers102

from cprune_core import data
from cprune_core.access import Access
from cprune_core.data import collate_skip_bad, download, indexing, load_dataset, loader_workers, make_loader, tf_flowers
from cprune_core.data.download import LOCK_FILE, download_lock
from cprune_core.data.roots import NOT_ALLOWED
from cprune_core.errors import ConfigError, DatasetError, PathNotAllowedError, StopRequested, UnreadableImageError
from cprune_core.paths import SHARED_FLOWERS

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def write_image(path: Path, color=(200, 30, 30), size=(16, 16), mode="RGB", fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, format=fmt)
    return path


def make_image_folder(root: Path, counts: dict[str, int]) -> Path:
    """root/<class>/<class>_<i>.jpg, each image a distinct colour."""
    for c, (name, n) in enumerate(counts.items()):
        for i in range(n):
            write_image(root / name / f"{name}_{i:03d}.jpg", color=(40 * c, 5 * i % 256, 100))
    return root


def split_paths(splits) -> dict[str, set[str]]:
    return {split: {path for path, _ in getattr(splits, split).samples} for split in data.SPLITS}


def truncate(path: Path) -> None:
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])


@pytest.fixture
def three_classes(tmp_path) -> Path:
    return make_image_folder(tmp_path / "pets", {"cat": 20, "dog": 20, "fox": 20})


# ----------------------------------------------------------------------------- ImageFolder layouts


def test_folder_split_is_stratified_disjoint_and_complete(three_classes):
    splits = load_dataset("folder", three_classes)

    assert splits.classes == ["cat", "dog", "fox"]
    summary = splits.summary()
    assert summary["splits"] == {"train": 42, "val": 9, "test": 9}
    assert all(counts == {"train": 14, "val": 3, "test": 3} for counts in summary["per_class"].values())
    assert summary["n_skipped"] == 0 and splits.skipped == []
    paths = split_paths(splits)
    assert not (paths["train"] & paths["val"] or paths["train"] & paths["test"] or paths["val"] & paths["test"])
    on_disk = {str(p) for p in three_classes.rglob("*.jpg")}
    assert paths["train"] | paths["val"] | paths["test"] == on_disk
    for path, label in splits.train.samples + splits.test.samples:
        assert Path(path).parent.name == splits.classes[label]


def test_tf_flowers_with_local_root_ignores_root_files(tmp_path):
    root = make_image_folder(tmp_path / "flower_photos", {"daisy": 5, "rose": 5})
    (root / "LICENSE.txt").write_text("CC-BY")

    splits = load_dataset("tf-flowers", root, download=False)

    assert splits.classes == ["daisy", "rose"]
    assert sum(splits.summary()["splits"].values()) == 10
    assert splits.root == root.resolve()


def test_split_depends_only_on_seed(three_classes):
    first, again = load_dataset("folder", three_classes, seed=1), load_dataset("folder", three_classes, seed=1)
    other = load_dataset("folder", three_classes, seed=2)

    assert split_paths(first) == split_paths(again)
    assert split_paths(first)["test"] != split_paths(other)["test"]
    assert other.summary()["per_class"] == first.summary()["per_class"]  # still stratified


def test_train_per_class_subsamples_train_only(three_classes):
    full = load_dataset("folder", three_classes, seed=3)
    few = load_dataset("folder", three_classes, seed=3, train_per_class=4)
    more_than_available = load_dataset("folder", three_classes, seed=3, train_per_class=1000)

    assert few.train.class_counts() == [4, 4, 4]
    assert split_paths(few)["train"] < split_paths(full)["train"]
    assert split_paths(few)["val"] == split_paths(full)["val"]
    assert split_paths(few)["test"] == split_paths(full)["test"]
    assert split_paths(more_than_available) == split_paths(full)
    assert split_paths(load_dataset("folder", three_classes, seed=3, train_per_class=4)) == split_paths(few)


def test_flowers_sample_ships_with_the_repo():
    splits = load_dataset("flowers-sample")

    assert splits.classes == ["daisy", "dandelion", "rose", "sunflower", "tulip"]
    assert sum(splits.summary()["splits"].values()) == 500
    assert all(sum(counts.values()) == 100 for counts in splits.summary()["per_class"].values())
    assert splits.skipped == [] and splits.dropped_classes == []
    image, label = splits.val.with_transform(data.build_transform(64, MEAN, STD, train=False))[0]
    assert image.shape == (3, 64, 64) and 0 <= label < 5


@pytest.mark.skipif(not SHARED_FLOWERS.is_dir(), reason="../shared/data/flowers128 not present")
def test_shared_flowers128_indexes_completely():
    summary = load_dataset("tf-flowers", SHARED_FLOWERS).summary()

    assert summary["n_classes"] == 5
    assert sum(summary["splits"].values()) == 3660
    assert summary["n_skipped"] == 0


# ----------------------------------------------------------------------------- Oxford Flowers-102


def make_flowers102(root: Path, labels: list[int], split_ids: dict[str, list[int]]) -> Path:
    """torchvision's layout: root/flowers-102/{jpg/image_XXXXX.jpg, imagelabels.mat, setid.mat}."""
    folder = root / "flowers-102"
    for image_id, label in enumerate(labels, start=1):
        write_image(folder / "jpg" / f"image_{image_id:05d}.jpg", color=(label * 60, image_id * 7 % 256, 0))
    # Shapes and dtypes as in the official files: 1 x N rows.
    scipy.io.savemat(folder / "imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8)})
    scipy.io.savemat(
        folder / "setid.mat",
        {key: np.array([split_ids[split]], dtype=np.uint16) for split, key in
         (("train", "trnid"), ("val", "valid"), ("test", "tstid"))},
    )
    return folder


@pytest.fixture
def flowers102(tmp_path) -> tuple[Path, list[int], dict[str, list[int]]]:
    labels = [1, 2, 3] * 10  # image i has label (i - 1) % 3 + 1
    ids = list(range(1, 31))
    split_ids = {"train": ids[:6], "val": ids[6:12], "test": ids[12:]}  # 2 / 2 / 6 per class
    make_flowers102(tmp_path, labels, split_ids)
    return tmp_path, labels, split_ids


def test_flowers102_keeps_official_splits(flowers102):
    root, labels, split_ids = flowers102
    splits = load_dataset("oxford-flowers102", root, download=False, seed=5, val_fraction=0.3)

    assert splits.classes == Flowers102.classes[:3]
    assert splits.summary()["splits"] == {"train": 6, "val": 6, "test": 18}
    for split, ids in split_ids.items():
        samples = getattr(splits, split).samples
        assert sorted(int(Path(path).stem[len("image_"):]) for path, _ in samples) == ids
        assert all(label == labels[int(Path(path).stem[6:]) - 1] - 1 for path, label in samples)


def test_flowers102_root_may_be_the_dataset_folder_and_train_per_class_applies(flowers102):
    root, _, _ = flowers102
    splits = load_dataset("oxford-flowers102", root / "flowers-102", download=False, train_per_class=1)

    assert splits.train.class_counts() == [1, 1, 1]
    assert (len(splits.val), len(splits.test)) == (6, 18)


def test_flowers102_reports_listed_but_missing_and_corrupt_images(flowers102):
    root, _, _ = flowers102
    (root / "flowers-102" / "jpg" / "image_00030.jpg").unlink()
    truncate(root / "flowers-102" / "jpg" / "image_00029.jpg")

    splits = load_dataset("oxford-flowers102", root, download=False)

    assert len(splits.test) == 16
    reasons = dict(splits.skipped)
    assert "missing" in reasons[str(root / "flowers-102" / "jpg" / "image_00030.jpg")]
    assert "cannot decode" in reasons[str(root / "flowers-102" / "jpg" / "image_00029.jpg")]


def test_flowers102_missing_files_say_where_to_put_them(tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match="setid.mat"):
        load_dataset("oxford-flowers102", tmp_path, download=False)

    def offline(self):
        raise OSError("network unreachable")

    monkeypatch.setattr(Flowers102, "download", offline)
    with pytest.raises(DatasetError, match="robots.ox.ac.uk") as error:
        load_dataset("oxford-flowers102", tmp_path, download=True)
    assert "failed" in str(error.value) and "imagelabels.mat" in str(error.value)


# ----------------------------------------------------------------------------- Caltech-101


def test_caltech101_drops_background_class(tmp_path):
    categories = tmp_path / "caltech101" / "101_ObjectCategories"
    make_image_folder(categories, {"BACKGROUND_Google": 4, "Faces": 4, "accordion": 4, "airplanes": 4})

    splits = load_dataset("caltech101", tmp_path, download=False)

    assert splits.classes == ["Faces", "accordion", "airplanes"]
    assert sum(splits.summary()["splits"].values()) == 12
    assert load_dataset("caltech101", categories, download=False).classes == splits.classes


def test_caltech101_not_found_without_download(tmp_path):
    with pytest.raises(DatasetError, match="101_ObjectCategories"):
        load_dataset("caltech101", tmp_path, download=False)


# ----------------------------------------------------------------------------- TF Flowers download


def test_tf_flowers_offline_suggests_a_local_folder(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(tf_flowers, "download_and_extract_archive", offline)
    with pytest.raises(DatasetError) as error:
        load_dataset("tf-flowers", cache_dir=tmp_path)

    message = str(error.value)
    assert "failed" in message and "local folder" in message and "flowers128" in message
    assert [path.name for path in tmp_path.iterdir()] == [LOCK_FILE]  # no partial download left behind


def test_tf_flowers_download_is_cached(tmp_path, monkeypatch):
    calls = []

    def fake_download(url, download_root, **kwargs):
        calls.append(url)
        make_image_folder(Path(download_root) / "flower_photos", {"daisy": 3, "tulip": 3})

    monkeypatch.setattr(tf_flowers, "download_and_extract_archive", fake_download)
    first = load_dataset("tf-flowers", cache_dir=tmp_path)
    again = load_dataset("tf-flowers", cache_dir=tmp_path)

    assert calls == [tf_flowers.URL]
    assert first.classes == again.classes == ["daisy", "tulip"]
    assert first.root == tmp_path / "flower_photos"
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_FILE, "flower_photos"]


def test_tf_flowers_without_download_does_not_fetch(tmp_path, monkeypatch):
    monkeypatch.setattr(tf_flowers, "download_and_extract_archive", pytest.fail)
    with pytest.raises(DatasetError, match="download is off"):
        load_dataset("tf-flowers", cache_dir=tmp_path, download=False)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "name, kwargs, message, kind",
    [
        ("imagenet", {}, "Unknown dataset", ConfigError),
        ("folder", {}, "needs a root", DatasetError),
        ("folder", {"root": "/no/such/folder"}, "not found", DatasetError),
        ("folder", {"val_fraction": 0.5, "test_fraction": 0.5}, "sum to less than 1", ConfigError),
        ("folder", {"val_fraction": float("nan")}, "val_fraction must be in", ConfigError),
        ("folder", {"train_per_class": 0}, "at least 1", ConfigError),
    ],
)
def test_bad_arguments_are_refused(name, kwargs, message, kind):
    with pytest.raises(kind, match=message):
        load_dataset(name, **kwargs)


def test_root_that_is_a_file_is_refused(tmp_path):
    archive = tmp_path / "photos.zip"
    archive.write_bytes(b"PK\x05\x06" + bytes(18))
    with pytest.raises(DatasetError, match="is a file"):
        load_dataset("folder", archive)


def test_empty_class_folder_is_dropped_and_reported(tmp_path):
    root = make_image_folder(tmp_path / "d", {"cat": 4, "dog": 4})
    (root / "empty").mkdir()

    splits = load_dataset("folder", root)

    assert splits.classes == ["cat", "dog"]
    assert splits.dropped_classes == ["empty"]
    assert splits.summary()["dropped_classes"] == ["empty"]


def test_single_class_is_an_error(tmp_path):
    root = make_image_folder(tmp_path / "d", {"cat": 4})
    (root / "dog").mkdir()
    with pytest.raises(DatasetError, match="Only one class.*'cat'.*dog"):
        load_dataset("folder", root)


def test_no_images_is_an_error(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="No readable images"):
        load_dataset("folder", tmp_path)


def test_loose_images_without_class_folders_explain_the_layout(tmp_path):
    write_image(tmp_path / "a.jpg")
    with pytest.raises(DatasetError, match="sub-folder per class.*1 images directly"):
        load_dataset("folder", tmp_path)


def test_non_image_and_hidden_files_are_ignored_silently(tmp_path):
    root = make_image_folder(tmp_path / "d", {"cat": 3, "dog": 3})
    (root / "cat" / "notes.txt").write_text("hello")
    (root / "cat" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    write_image(root / "cat" / "._cat_000.jpg")  # macOS resource fork next to a real image
    write_image(root / "dog" / ".thumbnails" / "t.jpg")
    write_image(root / ".hidden_class" / "x.jpg")

    splits = load_dataset("folder", root)

    assert splits.classes == ["cat", "dog"]
    assert sum(splits.summary()["splits"].values()) == 6
    assert splits.skipped == []


def test_undecodable_images_are_skipped_with_a_reason(tmp_path):
    root = make_image_folder(tmp_path / "d", {"cat": 4, "dog": 4})
    truncate(root / "cat" / "cat_000.jpg")
    (root / "dog" / "empty.jpg").write_bytes(b"")
    (root / "dog" / "fake.png").write_text("not a png")

    splits = load_dataset("folder", root)

    reasons = dict(splits.skipped)
    assert set(reasons) == {str(root / "cat" / "cat_000.jpg"), str(root / "dog" / "empty.jpg"), str(root / "dog" / "fake.png")}
    assert "cannot decode" in reasons[str(root / "cat" / "cat_000.jpg")]
    assert "empty" in reasons[str(root / "dog" / "empty.jpg")]
    assert splits.summary()["n_skipped"] == 3
    assert splits.summary()["per_class"]["cat"] == {"train": 3, "val": 0, "test": 0}
    assert all(path not in reasons for split in split_paths(splits).values() for path in split)


def test_scan_is_cached_per_file_version(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "d", {"cat": 3, "dog": 3})
    load_dataset("folder", root)
    decoded = []
    original = indexing.decode_problem
    monkeypatch.setattr(indexing, "decode_problem", lambda key: decoded.append(key[0]) or original(key))

    load_dataset("folder", root)
    assert decoded == []
    truncate(root / "dog" / "dog_001.jpg")
    reloaded = load_dataset("folder", root)
    assert decoded == [str(root / "dog" / "dog_001.jpg")]
    assert [path for path, _ in reloaded.skipped] == decoded


def test_file_corrupted_after_indexing_is_dropped_and_counted(tmp_path):
    root = make_image_folder(tmp_path / "d", {"cat": 10, "dog": 10})
    splits = load_dataset("folder", root, val_fraction=0, test_fraction=0)
    train = splits.train.with_transform(data.build_transform(16, MEAN, STD, train=True))
    broken = train.samples[3][0]
    truncate(Path(broken))

    loader = DataLoader(train, batch_size=4, shuffle=True, num_workers=2, collate_fn=collate_skip_bad)
    seen = 0
    for images, labels in (batch for batch in loader if batch is not None):
        assert images.shape[1:] == (3, 16, 16)
        seen += len(labels)

    assert seen == 19
    assert train.n_failed == 1 and train.failed_paths == [broken]
    assert splits.train.n_failed == 1  # the copy shares the failure flags
    assert collate_skip_bad([None, None]) is None


def test_make_loader_reads_in_order_or_shuffled_by_its_seed_never_from_the_global_generator(tmp_path):
    root = make_image_folder(tmp_path / "d", {"cat": 6, "dog": 6})
    dataset = load_dataset("folder", root, val_fraction=0, test_fraction=0).train
    transform = data.build_transform(16, MEAN, STD, train=False)
    cpu = torch.device("cpu")

    def labels(loader) -> list[int]:
        return [int(label) for _, batch in loader for label in batch]

    assert labels(make_loader(dataset, transform, 5, cpu)) == [label for _, label in dataset.samples]
    shuffled = labels(make_loader(dataset, transform, 5, cpu, shuffle_seed=3))
    assert shuffled == labels(make_loader(dataset, transform, 5, cpu, shuffle_seed=3)) != labels(
        make_loader(dataset, transform, 5, cpu, shuffle_seed=4))
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    labels(make_loader(dataset, transform, 5, cpu))
    labels(make_loader(dataset, transform, 5, cpu, shuffle_seed=3))
    assert torch.equal(torch.rand(1), expected)  # dropout after reading batches is what it would have been
    assert dataset.transform is None  # the loader reads a copy with the transform


def test_make_loader_reads_in_worker_processes_with_pinned_memory_only_for_a_gpu(tmp_path):
    dataset = load_dataset("folder", make_image_folder(tmp_path / "d", {"cat": 2, "dog": 2}),
                           val_fraction=0, test_fraction=0).train
    on_cpu = make_loader(dataset, None, 2, torch.device("cpu"))
    on_gpu = make_loader(dataset, None, 2, torch.device("cuda"))  # built, not iterated: no GPU needed
    assert (on_cpu.num_workers, on_cpu.pin_memory) == (0, False)
    assert (on_gpu.num_workers, on_gpu.pin_memory) == (loader_workers(torch.device("cuda")), True)
    assert 1 <= on_gpu.num_workers <= 8


# ----------------------------------------------------------------------------- image modes


def save_special(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.png"
    if kind == "rgba":
        image = Image.new("RGBA", (20, 10), (255, 0, 0, 255))
        image.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent: must come out white
    elif kind == "la":
        image = Image.new("LA", (20, 10), (0, 0))
    elif kind == "palette":
        image = Image.new("P", (20, 10), 1)
        image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
        image.info["transparency"] = 0
        image.putpixel((0, 0), 0)
    elif kind == "gray":
        image = Image.new("L", (20, 10), 90)
    elif kind == "cmyk":
        path = path.with_suffix(".jpg")
        image = Image.new("CMYK", (20, 10), (0, 255, 255, 0))
    elif kind == "gray16":
        image = Image.fromarray(np.full((10, 20), 65535, dtype=np.uint16))
    elif kind == "wide":
        path = path.with_suffix(".jpg")
        image = Image.new("RGB", (5000, 300), (10, 200, 10))
    image.save(path, **({"transparency": 0} if kind == "palette" else {}))
    return path


@pytest.mark.parametrize("kind", ["rgba", "la", "palette", "gray", "cmyk", "gray16", "wide"])
def test_any_image_mode_loads_as_rgb_tensor(tmp_path, kind):
    path = save_special(tmp_path, kind)

    image = data.open_rgb(path)

    assert image.mode == "RGB"
    assert max(image.size) <= data.MAX_IMAGE_SIDE
    tensor = data.build_transform(32, MEAN, STD, train=False)(image)
    assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.float32


def test_mode_conversions_keep_the_colours(tmp_path):
    assert data.open_rgb(save_special(tmp_path, "rgba")).getpixel((0, 0)) == (255, 255, 255)
    assert data.open_rgb(save_special(tmp_path, "rgba")).getpixel((1, 0)) == (255, 0, 0)
    assert data.open_rgb(save_special(tmp_path, "palette")).getpixel((0, 0)) == (255, 255, 255)
    assert data.open_rgb(save_special(tmp_path, "la")).getpixel((0, 0)) == (255, 255, 255)
    assert data.open_rgb(save_special(tmp_path, "gray16")).getpixel((0, 0)) == (255, 255, 255)
    red, green, blue = data.open_rgb(save_special(tmp_path, "cmyk")).getpixel((5, 5))
    assert red > 200 and green < 60 and blue < 60
    assert data.open_rgb(save_special(tmp_path, "wide")).size == (4096, 246)


def test_exif_rotation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.new("RGB", (40, 20)).save(path, exif=exif)
    assert data.open_rgb(path).size == (20, 40)


def test_decompression_bomb_is_unreadable(tmp_path, monkeypatch):
    path = write_image(tmp_path / "bomb.png", size=(40, 40))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(UnreadableImageError, match="too large") as error:
        data.open_rgb(path)
    assert isinstance(error.value, DatasetError)


def test_unreadable_file_raises_dataset_error(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(os.urandom(64))
    with pytest.raises(DatasetError, match="cannot decode"):
        data.open_rgb(path)


# ----------------------------------------------------------------------------- transforms


def test_transforms_produce_normalised_crops(tmp_path):
    image = data.open_rgb(write_image(tmp_path / "x.jpg", color=(128, 128, 128), size=(90, 60)))

    train = data.build_transform(48, MEAN, STD, train=True)(image)
    evaluation = data.build_transform(48, MEAN, STD, train=False)(image)

    assert train.shape == evaluation.shape == (3, 48, 48)
    assert evaluation.mean().item() == pytest.approx((128 / 255 - 0.5) / 0.25, abs=0.05)
    eval_steps = data.build_transform(48, MEAN, STD, train=False, resize_size=60).transforms
    assert any(getattr(step, "size", None) == [60] for step in eval_steps)


def test_with_transform_returns_a_copy(three_classes):
    dataset = load_dataset("folder", three_classes).val
    transformed = dataset.with_transform(data.build_transform(24, MEAN, STD, train=False))

    assert dataset.transform is None and transformed.transform is not None
    assert transformed.samples is dataset.samples
    assert transformed[0][0].shape == (3, 24, 24)
    assert dataset[0][0].shape == (3, 16, 16)  # no transform: the image as a float tensor


# ----------------------------------------------------------------------------- hostile folders


def test_links_that_lead_back_up_loop_or_point_at_themselves_end_and_count_each_image_once(three_classes):
    os.symlink(three_classes, three_classes / "cat" / "up")  # back to the dataset root: a loop
    os.symlink("..", three_classes / "dog" / "parent")  # relative, also a loop
    os.symlink(three_classes / "fox", three_classes / "cat" / "fox-alias")  # another class's images
    os.symlink("self", three_classes / "cat" / "self")  # a link to itself
    os.symlink(three_classes / "dog" / "dog_000.jpg", three_classes / "cat" / "stolen.jpg")

    splits = load_dataset("folder", three_classes)

    assert splits.summary()["per_class"]["cat"] == {"train": 14, "val": 3, "test": 3}  # its own 20 only
    assert sum(splits.summary()["splits"].values()) == 60
    reasons = dict(splits.skipped)
    assert reasons[str(three_classes / "cat" / "stolen.jpg")].startswith("link back into this dataset")
    assert reasons[str(three_classes / "cat" / "up")].startswith("link back into this dataset")


def test_a_class_folder_that_links_to_another_class_is_not_a_second_class(three_classes):
    os.symlink(three_classes / "dog", three_classes / "alias")
    splits = load_dataset("folder", three_classes)
    assert splits.classes == ["cat", "dog", "fox"]


def test_links_into_a_store_outside_the_dataset_are_followed_once(tmp_path):
    store = make_image_folder(tmp_path / "store", {"a": 8, "b": 8})
    dataset = tmp_path / "links"
    (dataset / "first").mkdir(parents=True)
    (dataset / "second").mkdir()
    for path in (store / "a").iterdir():
        os.symlink(path, dataset / "first" / path.name)
    os.symlink(store / "b", dataset / "second" / "all")
    os.symlink(store / "b", dataset / "second" / "again")  # the same folder twice: indexed once

    splits = load_dataset("folder", dataset, val_fraction=0, test_fraction=0)

    assert splits.train.class_counts() == [8, 8]
    assert any("second time" in why for _, why in splits.skipped)


def test_special_files_and_broken_links_are_skipped_not_opened(three_classes):
    os.mkfifo(three_classes / "cat" / "pipe.jpg")  # opening it would block forever
    os.symlink(three_classes.parent / "nowhere.jpg", three_classes / "dog" / "broken.jpg")
    splits = load_dataset("folder", three_classes)
    reasons = dict(splits.skipped)
    assert reasons[str(three_classes / "cat" / "pipe.jpg")].startswith("not a regular file")
    assert reasons[str(three_classes / "dog" / "broken.jpg")].startswith("broken link")
    assert sum(splits.summary()["splits"].values()) == 60


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_system_tree_ends_within_the_budget(monkeypatch):
    monkeypatch.setenv("CPRUNE_INDEX_MAX_ENTRIES", "2000")  # /proc/self/root leads to the whole file system
    with pytest.raises(DatasetError, match="more than 2,000 files and folders"):
        load_dataset("folder", "/proc")


def test_the_time_budget_ends_a_slow_walk(three_classes):
    walk = indexing.Walk(three_classes, budget=indexing.WalkBudget(max_entries=10**6, max_seconds=0.0))
    with pytest.raises(DatasetError, match="took longer than 0 s"):
        walk.class_folders()


def test_indexing_stops_when_asked(three_classes):
    stop = threading.Event()
    stop.set()
    with pytest.raises(StopRequested, match="Stopped while indexing"):
        load_dataset("folder", three_classes, stop=stop)


def test_visitors_are_confined_to_the_data_roots_with_one_message(three_classes, tmp_path):
    visitor = Access(data_roots=(three_classes.parent.resolve(),))
    assert load_dataset("folder", three_classes, access=visitor).classes == ["cat", "dog", "fox"]
    outside = tmp_path.parent
    messages = set()
    for path in ("/etc", "/no/such/folder", str(outside), "/proc/self", str(three_classes / ".." / "..")):
        with pytest.raises(PathNotAllowedError) as error:
            load_dataset("folder", path, access=visitor)
        messages.add(str(error.value))
    assert messages == {NOT_ALLOWED}  # the same words whether the folder exists or not
    escape = three_classes.parent / "escape"
    os.symlink("/etc", escape)
    with pytest.raises(PathNotAllowedError):
        load_dataset("folder", escape, access=visitor)


@pytest.mark.parametrize("name", ["caltech101", "oxford-flowers102"])
def test_a_visitors_folder_is_only_read_never_downloaded_into(name, tmp_path, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("downloaded into a visitor's folder")

    monkeypatch.setattr("cprune_core.data.caltech101.Caltech101", no_download)
    monkeypatch.setattr("cprune_core.data.flowers102.Flowers102", no_download)
    folder = tmp_path / "data" / "mine"
    folder.mkdir(parents=True)
    with pytest.raises(DatasetError, match="only into its own cache"):
        load_dataset(name, folder, access=Access(data_roots=((tmp_path / "data").resolve(),)))
    assert list(folder.iterdir()) == []


def test_a_dataset_folder_below_the_named_one_that_links_out_is_refused(tmp_path):
    outside = make_image_folder(tmp_path / "private", {"secret": 3, "other": 3})
    named = tmp_path / "data" / "caltech"
    named.mkdir(parents=True)
    os.symlink(outside, named / "101_ObjectCategories")  # where indexing would start
    with pytest.raises(PathNotAllowedError):
        load_dataset("caltech101", named, access=Access(data_roots=((tmp_path / "data").resolve(),)))
    flowers = tmp_path / "data" / "flowers-102"
    (flowers / "jpg").mkdir(parents=True)
    for name in ("imagelabels.mat", "setid.mat"):
        os.symlink(outside / "secret" / "secret_000.jpg", flowers / name)
    with pytest.raises(PathNotAllowedError):
        load_dataset("oxford-flowers102", flowers, access=Access(data_roots=((tmp_path / "data").resolve(),)))


def test_a_path_with_a_nul_byte_is_refused_like_any_other(tmp_path):
    with pytest.raises(PathNotAllowedError):
        load_dataset("folder", str(tmp_path) + "\0x", access=Access(data_roots=(tmp_path.resolve(),)))


def test_links_out_of_the_data_roots_are_not_read(tmp_path):
    outside = make_image_folder(tmp_path / "private", {"secret": 3})
    dataset = make_image_folder(tmp_path / "data" / "set", {"cat": 4, "dog": 4})
    os.symlink(outside / "secret", dataset / "cat" / "peek")
    visitor = Access(data_roots=((tmp_path / "data").resolve(),))
    splits = load_dataset("folder", dataset, access=visitor, val_fraction=0, test_fraction=0)
    assert splits.train.class_counts() == [4, 4]
    assert dict(splits.skipped)[str(dataset / "cat" / "peek")].startswith("link to a place outside")
    assert load_dataset("folder", dataset, val_fraction=0, test_fraction=0).train.class_counts() == [7, 4]


@pytest.fixture
def lock_never_waits(monkeypatch):
    """flock that refuses at once (BlockingIOError, turned into DatasetError by download_lock) where it would wait
    for another holder: a test then sees a wait as an error, deterministically, instead of hanging."""
    blocking_flock = download.fcntl.flock
    monkeypatch.setattr(download.fcntl, "flock", lambda fd, operation: blocking_flock(fd, operation | fcntl.LOCK_NB))


def test_the_download_lock_lets_one_downloader_in_at_a_time(tmp_path, lock_never_waits):
    """Two runs of one node needing the same download: the second waits for the first (here: is refused
    instead of waiting), and gets the lock once the first has released it, also after an error."""
    # The first holder, then a second one (another process's run: flock locks per open file, so it must wait).
    with download_lock(tmp_path), pytest.raises(DatasetError, match="cannot be locked"), download_lock(tmp_path):
        pass
    with pytest.raises(RuntimeError, match="download failed"), download_lock(tmp_path):
        raise RuntimeError("download failed")
    with download_lock(tmp_path):  # released both times
        pass


def test_a_dataset_already_there_does_not_wait_for_a_download_in_progress(tmp_path, lock_never_waits):
    make_image_folder(tmp_path / "flower_photos", {"daisy": 3, "tulip": 3})
    with download_lock(tmp_path):  # another run is downloading something into this cache
        loaded = load_dataset("tf-flowers", cache_dir=tmp_path)  # would be refused if it asked for the lock
    assert loaded.classes == ["daisy", "tulip"]
