"""Camera images: each configured camera's frame, cropped, optionally grayscaled and resized."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from gymnasium import spaces

from carla_rl_env.observations.base import ObservationContext, ObservationPart

if TYPE_CHECKING:
    from carla_rl_env.task import Frame


def preprocess_image(image: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """Crop, grayscale and resize one camera image to the observation's (H, W, C) uint8."""
    top, bottom, left, right = spec.get("crop", [0, 0, 0, 0])
    h, w = image.shape[:2]
    image = image[top : h - bottom, left : w - right]
    channels = image.shape[2]
    if spec.get("grayscale", False):
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY if channels == 4 else cv2.COLOR_BGR2GRAY)[..., None]
    elif channels == 4:
        image = image[..., :3]  # bgra8 -> bgr: alpha carries nothing in CARLA's RGB camera
    size = (int(spec["width"]), int(spec["height"]))
    if image.shape[1::-1] != size:
        resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        image = resized[..., None] if resized.ndim == 2 else resized
    return np.ascontiguousarray(image)


class CameraObservation(ObservationPart):
    """One camera of ``env.observation.cameras`` (``{id, width, height, grayscale, crop}``), keyed by its
    sensor id: ``(height, width, 1 or 3)`` uint8, BGR as the bridge sends it."""

    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        self.key = spec["id"]

    @property
    def space(self) -> spaces.Box:
        channels = 1 if self.spec.get("grayscale", False) else 3
        return spaces.Box(0, 255, (int(self.spec["height"]), int(self.spec["width"]), channels), np.uint8)

    def observe(self, frame: Frame, context: ObservationContext) -> np.ndarray:
        if self.key not in frame.images:
            raise KeyError(f"frame has no image from sensor {self.key!r}")
        return preprocess_image(frame.images[self.key], self.spec)
