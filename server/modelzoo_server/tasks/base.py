"""The shape every task shares: options → tensors → graph → result (→ drawing)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from modelzoo_server.errors import InvalidInput
from modelzoo_server.model_entry import ModelEntry


class Task(ABC):
    """Pre- and post-processing for one kind of model; pure, no I/O, no TensorFlow."""

    name: ClassVar[str]

    def __init__(self, entry: ModelEntry) -> None:
        self.entry = entry

    @abstractmethod
    def options(self, params: Mapping[str, str]) -> Any:
        """Parse request options (query string or form fields); raise InvalidInput."""

    @abstractmethod
    def preprocess(self, image: np.ndarray, options: Any) -> dict[str, np.ndarray]:
        """An RGB uint8 H×W×3 array → the graph's feeds, by public tensor name."""

    @abstractmethod
    def postprocess(
        self, outputs: Mapping[str, np.ndarray], size: tuple[int, int], options: Any
    ) -> dict[str, Any]:
        """Graph outputs → the JSON result; `size` is the original (width, height)."""

    @abstractmethod
    def draw(self, image: Image.Image, result: Mapping[str, Any]) -> Image.Image:
        """The original image annotated with the result."""

    def warmup_image(self) -> np.ndarray:
        """A synthetic image that exercises the whole graph once before we report ready."""
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, size=(256, 256, 3), dtype=np.uint8)


def number_option(
    params: Mapping[str, str], key: str, default: float, low: float, high: float
) -> float:
    """A float option within [low, high], or a 400 that says which and why."""
    raw = params.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{key} must be a number, got {str(raw)[:40]!r}") from exc
    if not (low <= value <= high):
        raise InvalidInput(f"{key} must be between {low:g} and {high:g}, got {value:g}")
    return value


def line_width(image: Image.Image) -> int:
    return max(2, round(max(image.size) / 300))
