"""TensorFlow's flower_photos: five classes in the ImageFolder layout, downloaded as one archive."""
from __future__ import annotations

import tempfile
from pathlib import Path

from ..errors import DatasetError
from ..paths import SHARED_FLOWERS
from .download import download_errors

__all__ = ["URL", "locate"]

URL = "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz"


def download_and_extract_archive(url: str, download_root: str, remove_finished: bool = False) -> None:
    """torchvision's, imported at the first download: torchvision takes seconds to import, and the app's start
    needs no dataset."""
    from torchvision.datasets.utils import download_and_extract_archive as download

    download(url, download_root=download_root, remove_finished=remove_finished)


def locate(root: Path | None, cache_dir: Path, download: bool) -> Path:
    """``root`` when given, else flower_photos/ in the cache, downloaded and extracted on first use."""
    if root is not None:
        return root
    folder = cache_dir / "flower_photos"
    if folder.is_dir():
        return folder
    local_alternative = (
        "pass as root a local folder with the same layout (one sub-folder of images per class), "
        f"e.g. {SHARED_FLOWERS} or an extracted flower_photos/ folder"
    )
    if not download:
        raise DatasetError(f"TF Flowers is not in the cache ({folder}) and download is off: turn it on, or {local_alternative}.")
    with download_errors(f"TF Flowers from {URL}", f"If this machine is offline, {local_alternative}"):
        cache_dir.mkdir(parents=True, exist_ok=True)
        # Extract into a staging folder so an interrupted download never leaves a partial dataset.
        with tempfile.TemporaryDirectory(prefix=".tf-flowers-", dir=cache_dir) as staging:
            download_and_extract_archive(URL, download_root=staging, remove_finished=True)
            extracted = Path(staging) / "flower_photos"
            if extracted.is_dir():
                extracted.rename(folder)
    if not folder.is_dir():
        raise DatasetError(f"The archive {URL} has no flower_photos/ folder; {local_alternative}.")
    return folder
