"""Landmark smoothing: MediaPipe's one-euro and low-pass filters, over whole arrays.

One filter object holds the state of every landmark coordinate at once, so a
frame costs a few numpy operations regardless of the landmark count.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np


class LowPass:
    """y = a*x + (1-a)*y_prev; the first sample passes through."""

    def __init__(self) -> None:
        self.raw: Optional[np.ndarray] = None
        self.stored: Optional[np.ndarray] = None

    def apply(self, value: np.ndarray, alpha) -> np.ndarray:
        if self.stored is None or self.stored.shape != value.shape:
            out = value.astype(np.float64, copy=True)
        else:
            out = alpha * value + (1.0 - alpha) * self.stored
        self.raw = value.astype(np.float64, copy=True)
        self.stored = out
        return out

    def reset(self) -> None:
        self.raw = None
        self.stored = None


class OneEuro:
    """One-euro filter with MediaPipe's conventions.

    The derivative uses the previous *raw* value scaled by ``value_scale``
    (1/object size in pixels), so the same parameters work for near and far
    people; the sampling frequency comes from the timestamps.
    """

    def __init__(self, min_cutoff: float, beta: float, derivate_cutoff: float, frequency: float = 30.0) -> None:
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.derivate_cutoff = derivate_cutoff
        self.initial_frequency = frequency
        self.reset()

    def reset(self) -> None:
        self.frequency = self.initial_frequency
        self.last_time: Optional[float] = None
        self.x = LowPass()
        self.dx = LowPass()

    def _alpha(self, cutoff):
        te = 1.0 / self.frequency
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / te)

    def apply(self, value: np.ndarray, timestamp: float, value_scale: float = 1.0) -> np.ndarray:
        if self.last_time is not None and timestamp <= self.last_time:
            return value
        if self.last_time is not None:
            self.frequency = 1.0 / (timestamp - self.last_time)
        self.last_time = timestamp
        if self.x.raw is not None and self.x.raw.shape == value.shape:
            dvalue = (value - self.x.raw) * value_scale * self.frequency
        else:
            dvalue = np.zeros_like(value, dtype=np.float64)
        edvalue = self.dx.apply(dvalue, self._alpha(self.derivate_cutoff))
        cutoff = self.min_cutoff + self.beta * np.abs(edvalue)
        return self.x.apply(value, self._alpha(cutoff))


class LandmarkSmoother:
    """Smooths normalised landmarks in pixel space with an object-scale-aware one-euro filter,
    and their visibility with a low-pass filter."""

    def __init__(self, min_cutoff: float, beta: float, derivate_cutoff: float = 1.0,
                 disable_value_scaling: bool = False, visibility_alpha: float = 0.1) -> None:
        self.coords = OneEuro(min_cutoff, beta, derivate_cutoff)
        self.visibility = LowPass()
        self.visibility_alpha = visibility_alpha
        self.disable_value_scaling = disable_value_scaling

    def reset_coords(self) -> None:
        self.coords.reset()

    def reset(self) -> None:
        self.coords.reset()
        self.visibility.reset()

    def apply(self, lm: np.ndarray, timestamp: float, width: int, height: int,
              object_scale: Optional[float] = None, pixel_space: bool = True) -> np.ndarray:
        """``lm`` is (N, 3+) with x, y, z[, visibility, presence]; returns a filtered copy."""
        out = lm.astype(np.float32, copy=True)
        if lm.shape[1] > 3:
            out[:, 3] = self.visibility.apply(lm[:, 3], self.visibility_alpha)
        if self.disable_value_scaling:
            value_scale = 1.0
        else:
            if object_scale is None or object_scale < 1e-6:
                return out
            value_scale = 1.0 / object_scale
        if pixel_space:
            scale = np.array([width, height, width], dtype=np.float64)
            px = lm[:, :3].astype(np.float64) * scale
            out[:, :3] = self.coords.apply(px, timestamp, value_scale) / scale
        else:
            out[:, :3] = self.coords.apply(lm[:, :3].astype(np.float64), timestamp, value_scale)
        return out
