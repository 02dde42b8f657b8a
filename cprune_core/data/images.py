"""Reading image files as RGB, and the preprocessing from a PIL image to a network input."""
from __future__ import annotations

import os
import stat
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from ..errors import UnreadableImageError
from .roots import is_inside

__all__ = ["IMAGE_EXTENSIONS", "MAX_IMAGE_SIDE", "open_rgb", "decode_rgb", "open_confined", "build_transform"]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
MAX_IMAGE_SIDE = 4096  # larger images are downsized on load: nothing we train needs more
EVAL_RESIZE_RATIO = 1.14  # shorter side before the centre crop, relative to the crop (256/224)

# PIL raises any of these on corrupt or truncated data, depending on the format plugin.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)


def open_confined(path: str | os.PathLike, roots: list[Path]) -> BinaryIO:
    """``path`` opened for reading when the file actually opened is a regular file inside ``roots``; else
    UnreadableImageError. The check is made on the open file itself (Linux: the path of /proc/self/fd/N), not
    on the name before opening it, so a folder link swapped between a check and the open cannot let a file
    from outside the data folders in."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as err:
        raise UnreadableImageError(path, f"cannot read file: {err.strerror}") from err
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise UnreadableImageError(path, "not a regular file (a pipe, socket or device)")
        proc = f"/proc/self/fd/{descriptor}"
        opened = os.readlink(proc) if os.path.islink(proc) else os.path.realpath(path)
        if not is_inside(opened, roots):
            raise UnreadableImageError(path, "the file opened lies outside the server's data folders")
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def open_rgb(path: str | os.PathLike, roots: list[Path] | None = None) -> Image.Image:
    """Decode an image file as an RGB PIL image.

    Palette and alpha images are composited on white, grayscale, CMYK and 16-bit images are
    converted, EXIF rotation is applied, and images larger than MAX_IMAGE_SIDE on a side are
    downsized (aspect ratio kept). Raises UnreadableImageError (a DatasetError) when the file
    is empty, truncated, corrupt or too large for PIL's decompression-bomb guard, and, with
    ``roots``, when the file opened is not inside them (``open_confined``).
    """
    rgb = decode_rgb(path, draft_size=(MAX_IMAGE_SIDE, MAX_IMAGE_SIDE), roots=roots)
    if max(rgb.size) > MAX_IMAGE_SIDE:
        rgb.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
    return rgb


def decode_rgb(path: str | os.PathLike, draft_size: tuple[int, int], roots: list[Path] | None = None) -> Image.Image:
    """Decode the whole file to an upright RGB image (with ``roots``: only a file inside them, see open_confined).

    JPEGs are decoded at the coarsest DCT scale (1/2 to 1/8) that stays at least draft_size:
    libjpeg still reads the whole stream, so truncation is detected at any scale.
    """
    source = open_confined(path, roots) if roots is not None else path
    try:
        with Image.open(source) as image:
            image.draft("RGB", draft_size)
            image.load()
            rgb = _to_rgb(image)
        ImageOps.exif_transpose(rgb, in_place=True)
    except Image.DecompressionBombError as err:
        raise UnreadableImageError(path, f"too large to decode safely ({err})") from err
    except _DECODE_ERRORS as err:
        raise UnreadableImageError(path, f"cannot decode image ({err})") from err
    finally:
        if roots is not None:
            source.close()
    return rgb


def _to_rgb(image: Image.Image) -> Image.Image:
    """A new RGB image from any PIL mode (the source is closed by the caller)."""
    if image.mode == "RGB":
        return image.copy()
    if image.mode == "P" or "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode.startswith("I") or image.mode == "F":
        return _high_bit_depth_to_gray(image).convert("RGB")
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, ...


def _high_bit_depth_to_gray(image: Image.Image) -> Image.Image:
    """8-bit grayscale from 16-bit, 32-bit integer or float images (PIL's own convert clips)."""
    pixels = np.asarray(image, dtype=np.float32)
    if image.mode.startswith("I;16"):
        scaled = pixels / 257.0  # 0..65535 -> 0..255
    else:  # "I" and "F" have no fixed range: stretch to the full 8 bits
        low, high = float(pixels.min()), float(pixels.max())
        scaled = (pixels - low) * (255.0 / max(high - low, 1e-12))
    return Image.fromarray(np.clip(scaled + 0.5, 0, 255).astype(np.uint8))


def build_transform(
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    train: bool,
    resize_size: int | None = None,
) -> Callable:
    """Preprocessing from a PIL image to a normalised float tensor of input_size x input_size (a torchvision
    v2.Compose; torchvision is imported here, not with the package: it takes seconds, and the app's start needs
    no dataset).

    train: RandomResizedCrop(scale 0.6-1) + horizontal flip. Evaluation: resize the shorter
    side to resize_size (default input_size * 1.14) and centre-crop.
    """
    import torch
    from torchvision.transforms import v2

    if train:
        geometry = [v2.RandomResizedCrop(input_size, scale=(0.6, 1.0), antialias=True), v2.RandomHorizontalFlip()]
    else:
        resize_size = resize_size or int(input_size * EVAL_RESIZE_RATIO)
        geometry = [v2.Resize(resize_size, antialias=True), v2.CenterCrop(input_size)]
    # Geometry on uint8 tensors (fast path), then scale to float and normalise.
    return v2.Compose(
        [v2.ToImage(), *geometry, v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    )
