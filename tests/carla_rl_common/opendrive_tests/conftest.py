"""Fixtures for the OpenDRIVE tests: the shared CARLA towns and a tiny .xodr snippet writer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from carla_rl_common.opendrive import RoadNetwork


@pytest.fixture(scope="session")
def town(shared_maps: Path) -> Callable[[str], RoadNetwork]:
    """Load (once per session) a CARLA town from ``<repo>/../shared/data/maps/carla``."""
    cache: dict[str, RoadNetwork] = {}

    def load(name: str) -> RoadNetwork:
        if name not in cache:
            cache[name] = RoadNetwork.from_file(shared_maps / f"{name}.xodr")
        return cache[name]

    return load


class Xodr:
    """Builders for hand-written OpenDRIVE text; every lane is 3.5 m wide unless told."""

    @staticmethod
    def document(
        *roads: str, junctions: str = "", header: str = "", geo: str = "+proj=tmerc +lat_0=49 +lon_0=8"
    ) -> str:
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n<OpenDRIVE>\n'
            f'<header revMajor="1" revMinor="4" name="snippet" {header}>'
            f"<geoReference><![CDATA[{geo}]]></geoReference></header>\n"
            + "\n".join(roads)
            + junctions
            + "\n</OpenDRIVE>\n"
        )

    @staticmethod
    def road(
        road_id: str,
        geometry: str,
        length: float,
        lanes: str | None = None,
        link: str = "",
        junction: int = -1,
        extra: str = "",
        attributes: str = "",
    ) -> str:
        lanes = lanes if lanes is not None else Xodr.section(Xodr.lane(1), Xodr.lane(-1))
        return (
            f'<road id="{road_id}" length="{length!r}" junction="{junction}" {attributes}>\n'
            f"<link>{link}</link>\n{extra}\n"
            f"<planView>\n{geometry}\n</planView>\n<lanes>\n{lanes}\n</lanes>\n</road>"
        )

    @staticmethod
    def geometry(shape: str, x: float, y: float, hdg: float, length: float, s: float = 0.0) -> str:
        return f'<geometry s="{s!r}" x="{x!r}" y="{y!r}" hdg="{hdg!r}" length="{length!r}">\n{shape}\n</geometry>'

    @staticmethod
    def section(*lanes: str, s: float = 0.0, center_mark: str = "solid") -> str:
        left = [lane for lane in lanes if 'id="-' not in lane]
        right = [lane for lane in lanes if 'id="-' in lane]
        return (
            f'<laneSection s="{s!r}">\n<left>{"".join(left)}</left>\n'
            f'<center><lane id="0" type="none"><roadMark sOffset="0" type="{center_mark}" color="yellow"/>'
            "</lane></center>\n"
            f"<right>{''.join(right)}</right>\n</laneSection>"
        )

    @staticmethod
    def lane(
        lane_id: int, width: float = 3.5, kind: str = "driving", link: str = "", extra: str = "", mark: str = "broken"
    ) -> str:
        return (
            f'<lane id="{lane_id}" type="{kind}"><link>{link}</link>'
            f'<width sOffset="0" a="{width!r}" b="0" c="0" d="0"/>'
            f'<roadMark sOffset="0" type="{mark}" color="white"/>{extra}</lane>'
        )

    @staticmethod
    def straight(road_id: str = "1", length: float = 100.0, lanes: str | None = None, **kwargs: object) -> str:
        """A road along +x from the origin."""
        return Xodr.road(road_id, Xodr.geometry("<line/>", 0.0, 0.0, 0.0, length), length, lanes, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def xodr() -> type[Xodr]:
    return Xodr
