"""Image-classification datasets: locate or download, index, split, load.

Every source is reduced to the same shape: a sorted list of classes and, per class, the
image files that decode (``indexing``). ``load_dataset`` turns that into seeded, stratified
train/val/test ``ImageListDataset``s (Oxford Flowers-102 keeps its official splits). Files that
cannot be decoded are found while indexing and reported in ``DatasetSplits.skipped``; files
that break later are dropped at load time by ``collate_skip_bad`` and counted in
``ImageListDataset.n_failed``. One module per source, as torchvision's datasets.
"""
from ..errors import DatasetError, UnreadableImageError
from .dataset import SPLITS, DatasetSplits, ImageListDataset, collate_skip_bad
from .images import IMAGE_EXTENSIONS, MAX_IMAGE_SIDE, build_transform, open_rgb
from .loader import loader_workers, make_loader
from .registry import DATASETS, DEFAULT_DATASET, DatasetSource, get_source, is_cached, load_dataset
from .roots import confine

__all__ = ["DATASETS", "DEFAULT_DATASET", "DatasetSource", "DatasetSplits", "ImageListDataset", "SPLITS",
           "IMAGE_EXTENSIONS", "MAX_IMAGE_SIDE", "DatasetError", "UnreadableImageError", "build_transform",
           "collate_skip_bad", "confine", "get_source", "is_cached", "load_dataset", "loader_workers", "make_loader",
           "open_rgb"]
