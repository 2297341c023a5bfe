"""Frames as the engine accepts them."""
from __future__ import annotations

import numpy as np


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Accept RGB, grayscale or RGBA uint8; anything else is a clear error.

    A contiguous HxWx3 uint8 array (what decoders give) passes through without a copy.
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"frame must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"frame must be uint8, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"frame must be HxWx3 (RGB), got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"frame is empty: shape {image.shape}")
    return np.ascontiguousarray(image)
