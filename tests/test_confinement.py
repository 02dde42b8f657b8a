"""A visitor's dataset stays inside the data folders while it is read, not only when the walk starts, and a
folder that fails under the walk is one sentence."""
from __future__ import annotations

import os

import pytest

from cprune_core.access import Access
from cprune_core.data import load_dataset
from cprune_core.data.images import open_confined
from cprune_core.errors import DatasetError, UnreadableImageError
from tiny_data import make_tiny_folder


@pytest.fixture
def layout(tmp_path):
    """roots/ holds a dataset whose class folders are links to folders beside them; outside/ holds images too."""
    root = tmp_path / "roots"
    make_tiny_folder(root / "store", per_class=3)
    make_tiny_folder(tmp_path / "outside", per_class=3)
    data = root / "data"
    data.mkdir()
    for name in ("red", "green", "blue"):
        (data / name).symlink_to(root / "store" / name)
    return root, data, tmp_path / "outside"


def test_a_class_link_swapped_after_indexing_lets_no_outside_file_in(layout):
    root, data, outside = layout
    splits = load_dataset("folder", data, access=Access(data_roots=(root,)), val_fraction=0.0, test_fraction=0.0)
    assert splits.train[0] is not None  # inside: read
    for name in ("red", "green", "blue"):  # now every class folder leads outside the data folders
        (data / name).unlink()
        (data / name).symlink_to(outside / name)
    assert all(splits.train[i] is None for i in range(len(splits.train)))
    assert splits.train.n_failed == len(splits.train)


def test_open_confined_checks_the_file_it_opened(layout, tmp_path):
    root, data, outside = layout
    inside = next((root / "store" / "red").iterdir())
    with open_confined(data / "red" / inside.name, [root]) as file:
        assert file.read(2) == b"\xff\xd8"  # a JPEG
    (root / "sneaky.jpg").symlink_to(next((outside / "red").iterdir()))
    with pytest.raises(UnreadableImageError, match="outside the server's data folders"):
        open_confined(root / "sneaky.jpg", [root])
    os.mkfifo(root / "pipe.jpg")
    with pytest.raises(UnreadableImageError, match="not a regular file"):
        open_confined(root / "pipe.jpg", [root])


def test_a_name_too_long_for_the_file_system_is_one_sentence(tmp_path):
    with pytest.raises(DatasetError, match="could not be read: File name too long"):
        load_dataset("folder", tmp_path / ("x" * 300))


def test_a_folder_removed_under_the_walk_is_one_sentence_or_a_skipped_class(tmp_path, monkeypatch):
    data = make_tiny_folder(tmp_path / "data", per_class=2)
    real_scandir = os.scandir
    gone = set()

    def vanishing(path):
        if os.path.basename(path) in gone:
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real_scandir(path)

    monkeypatch.setattr("cprune_core.data.indexing.os.scandir", vanishing)
    gone.add("green")  # a class folder: that class is left out, and said so
    splits = load_dataset("folder", data)
    assert splits.classes == ["blue", "red"] and any("green" in path for path, _ in splits.skipped)
    gone.add("data")  # the dataset folder itself
    with pytest.raises(DatasetError, match="could not be read: No such file or directory"):
        load_dataset("folder", data)
