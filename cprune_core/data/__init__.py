"""Image-classification datasets: locate or download, index, split, load.

Every source is reduced to the same shape: a sorted list of classes and, per class, the
image files that decode (``indexing``). ``load_dataset`` turns that into seeded, stratified
train/val/test ``ImageListDataset``s (Oxford Flowers-102 keeps its official splits). Files that
cannot be decoded are found while indexing and reported in ``DatasetSplits.skipped``; files
that break later are dropped at load time by ``collate_skip_bad`` and counted in
``ImageListDataset.n_failed``. One module per source, as torchvision's datasets.
"""
from ..lazy import attach

# Imported when first used: the dataset classes bring torch in, the names and splits do not (``schema``'s choices).
__getattr__, __dir__, __all__ = attach(__name__, {
    "registry": ("DATASETS", "DEFAULT_DATASET", "DatasetSource", "get_source", "is_cached", "load_dataset"),
    "dataset": ("DatasetSplits", "ImageListDataset", "collate_skip_bad"),
    "splits": ("SPLITS",),
    "images": ("IMAGE_EXTENSIONS", "MAX_IMAGE_SIDE", "build_transform", "open_rgb"),
    "loader": ("loader_workers", "make_loader"),
    "roots": ("confine",),
})
