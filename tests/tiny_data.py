"""Tiny ImageFolder data the tests make themselves: noisy images whose colour says the class."""
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220)}


def make_tiny_folder(root: Path, classes=CLASSES, per_class: int = 8, size: int = 48) -> Path:
    """root/<class>/<class>_<i>.jpg, seeded."""
    rng = np.random.default_rng(0)
    for name, colour in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}_{i}.jpg", quality=90)
    return root
