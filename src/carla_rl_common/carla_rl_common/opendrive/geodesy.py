"""Map frame -> WGS84 latitude/longitude, exactly as CARLA 0.9's ``GeoLocation::Transform``.

CARLA adds the metres to the geoReference origin in a Mercator projection scaled by the cosine
of the origin latitude (earth radius 6378137 m). CARLA's own y axis points south, and it negates
it before projecting, so in the (right-handed) map frame x is east and y is north directly.
"""

from __future__ import annotations

import math
import re

EARTH_RADIUS_EQUA = 6378137.0
DEFAULT_ORIGIN = (42.0, 2.0)  # CARLA's fallback when the geoReference has no +lat_0/+lon_0

_PARAMETER = re.compile(r"\+(lat_0|lon_0)=([-+0-9.eE]+)")


def geo_origin(geo_reference: str) -> tuple[float, float]:
    """``(lat_0, lon_0)`` in degrees from a PROJ string such as ``+proj=tmerc +lat_0=49 +lon_0=8``."""
    values = {key: float(value) for key, value in _PARAMETER.findall(geo_reference)}
    if "lat_0" not in values or "lon_0" not in values:
        return DEFAULT_ORIGIN
    return values["lat_0"], values["lon_0"]


def to_geodetic(origin: tuple[float, float], x: float, y: float, z: float = 0.0) -> tuple[float, float, float]:
    """``(latitude, longitude, altitude)`` of the map-frame point ``(x, y, z)``."""
    lat0, lon0 = origin
    scale = math.cos(math.radians(lat0))
    mx = scale * math.radians(lon0) * EARTH_RADIUS_EQUA + x
    my = scale * EARTH_RADIUS_EQUA * math.log(math.tan(math.radians(90.0 + lat0) / 2.0)) + y
    lon = math.degrees(mx / (EARTH_RADIUS_EQUA * scale))
    lat = math.degrees(2.0 * math.atan(math.exp(my / (EARTH_RADIUS_EQUA * scale)))) - 90.0
    return lat, lon, z
