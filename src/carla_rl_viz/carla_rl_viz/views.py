"""Pictures for people: a colour bird's-eye view and the video frame (camera | BEV, overlay text).

The BEV is :class:`carla_rl_common.bev.BevRenderer` (the raster the simulator's BEV sensor and the env's BEV
observation use), coloured with its ``to_rgb``; it needs only the road network, the ego pose, the other
vehicles' boxes and the route, so it works the same in-process, over ROS and against a real CARLA bridge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from carla_rl_common.bev import BevRenderer

PANEL = 256  # pixels: height of the camera and BEV panels in a video frame
TEXT_ROWS = 3
ROW_HEIGHT = 22


class BevView:
    """Colour BEV around the ego (ego facing up), ``size`` pixels square."""

    def __init__(self, lanes: Mapping, size: int = 192, pixels_per_meter: float = 4.0):
        self.renderer = BevRenderer(lanes, size=size, pixels_per_meter=pixels_per_meter, ego_offset=size // 3)

    def render(
        self,
        pose: tuple[float, float, float],
        ego_size: Sequence[float],
        vehicles: np.ndarray | Sequence = (),
        route: np.ndarray | None = None,
    ) -> np.ndarray:
        """(H, W, 3) RGB uint8; ``vehicles`` rows (x, y, yaw, length, width, height), ``route`` (K, 2)."""
        masks = self.renderer.render(pose, (float(ego_size[0]), float(ego_size[1])), vehicles, route)
        return self.renderer.to_rgb(masks)


def _fit(image: np.ndarray, height: int) -> np.ndarray:
    """Scale to ``height`` rows, keeping the aspect; nearest-neighbour for small sensor images (no blur)."""
    h, w = image.shape[:2]
    width = max(2, int(round(w * height / h)) // 2 * 2)
    interpolation = cv2.INTER_NEAREST if h < height else cv2.INTER_AREA
    return cv2.resize(image, (width, height), interpolation=interpolation)


def to_bgr(image: np.ndarray, encoding: str) -> np.ndarray:
    """A camera image in any of the bridge's 8-bit encodings as 3-channel BGR."""
    if encoding == "bgra8":
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if encoding == "rgb8":
        return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if encoding == "mono8" or image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(image[..., :3])


def compose_frame(
    camera_bgr: np.ndarray | None, bev_rgb: np.ndarray | None, lines: Sequence[str], panel: int = PANEL
) -> np.ndarray:
    """One video frame (BGR): camera and BEV side by side, ``lines`` of overlay text in a bar below.

    A missing camera or BEV leaves a black panel of the same size, so every frame of a video has one size.
    """
    cam = _fit(camera_bgr, panel) if camera_bgr is not None else np.zeros((panel, panel * 4 // 3 // 2 * 2, 3), np.uint8)
    bev = (
        _fit(cv2.cvtColor(bev_rgb, cv2.COLOR_RGB2BGR), panel)
        if bev_rgb is not None
        else np.zeros((panel, panel, 3), np.uint8)
    )
    top = np.hstack([cam, bev])
    bar = np.zeros((TEXT_ROWS * ROW_HEIGHT + 8, top.shape[1], 3), np.uint8)
    for row, text in enumerate(lines[:TEXT_ROWS]):
        cv2.putText(
            bar, text, (6, 18 + row * ROW_HEIGHT), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA
        )
    return np.vstack([top, bar])


def overlay_lines(
    episode: int,
    step: int,
    speed: float,
    action: Sequence[float],
    reward: float,
    terms: Mapping[str, float],
    reason: str = "",
) -> list[str]:
    """The overlay text: step, speed, action (throttle, steer, brake), reward and its largest terms."""
    throttle, steer, brake = (float(v) for v in action)
    biggest = sorted(terms.items(), key=lambda kv: -abs(kv[1]))[:2]
    return [
        f"episode {episode}  step {step}  speed {speed * 3.6:5.1f} km/h" + (f"  END: {reason}" if reason else ""),
        f"throttle {throttle:.2f}  steer {steer:+.2f}  brake {brake:.2f}",
        f"reward {reward:+.3f}  " + "  ".join(f"{k} {v:+.2f}" for k, v in biggest),
    ]
