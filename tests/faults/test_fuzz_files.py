"""Fuzz the config loader and the OpenDRIVE loader with mutated files (hypothesis).

Pass: a mutated file either loads or fails with the loader's own error (ConfigError / OpenDriveError, both
ValueErrors) naming the file; never another exception. Each test prints how many cases ran
(``CARLA_RL_FUZZ=large`` for the large profile, see conftest.py).
"""

from __future__ import annotations

import math
import re
from collections import Counter

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from carla_rl_agents.settings import load_run_config
from carla_rl_common.config import ConfigError
from carla_rl_common.opendrive import OpenDriveError, RoadNetwork
from carla_rl_common.paths import CONFIG_DIR

CASES: Counter[str] = Counter()
OUTCOMES: Counter[str] = Counter()

# --- text mutations ---------------------------------------------------------------------------------------
JUNK = st.sampled_from(
    [
        "",
        "nan",
        "-inf",
        "1e309",
        "-1e400",
        "0",
        "-1",
        "abc",
        "[",
        "]",
        "{",
        "}",
        ":",
        "- ",
        "\t",
        "\x00",
        "&amp;",
        "<",
        ">",
        '"',
        "'",
        "!!python/object:os.system",
        "&a",
        "*a",
        "é",
        "\ufeff",
        "99999999999999999999",
        "true",
        "null",
        "~",
        "1_0",
        "0x1f",
    ]
)


def mutated(text: str) -> st.SearchStrategy:
    """``text`` with 1-4 mutations: a line deleted, duplicated or cut, a value or token replaced by junk,
    bytes replaced, or the whole text truncated."""

    def apply(text: str, ops: list) -> str:
        for op, position, junk in ops:
            lines = text.splitlines(True) or [""]
            i = position % len(lines)
            if op == "delete":
                del lines[i]
            elif op == "duplicate":
                lines.insert(i, lines[i])
            elif op == "cut":
                lines[i] = lines[i][: position % (len(lines[i]) + 1)]
            elif op == "token":  # a value (after ':', '=' or between quotes) replaced by junk
                lines[i] = re.sub(r'(?<=[:="])[^"\n:,]*', lambda _, junk=junk: junk, lines[i], count=1)
            elif op == "bytes":
                k = position % (len(text) + 1)
                return text[:k] + junk + text[k + len(junk) :]
            elif op == "truncate":
                return text[: position % (len(text) + 1)]
            text = "".join(lines)
        return text

    op = st.tuples(
        st.sampled_from(["delete", "duplicate", "cut", "token", "token", "bytes", "truncate"]),
        st.integers(0, 10**9),
        JUNK,
    )
    return st.lists(op, min_size=1, max_size=4).map(lambda ops: apply(text, ops))


# --- config loader ----------------------------------------------------------------------------------------
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def _paths(tree, prefix=()):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield prefix + (key,)
            yield from _paths(value, prefix + (key,))


def structurally_mutated(text: str) -> st.SearchStrategy:
    """The YAML with a random key's value replaced by a random value, or a random unknown key added."""
    tree = yaml.safe_load(text)
    paths = list(_paths(tree))

    def apply(path, value, add):
        data = yaml.safe_load(text)
        node = data
        for key in path[:-1]:
            node = node[key]
        if add and isinstance(node.get(path[-1]), dict):
            node[path[-1]]["no_such_key"] = value
        else:
            node[path[-1]] = value
        return yaml.safe_dump(data)

    return st.builds(apply, st.sampled_from(paths), LEAVES, st.booleans())


@pytest.mark.parametrize("name", ["base.yaml", "ppo.yaml"])
def test_fuzz_config_loader(name, tmp_path):
    original = (CONFIG_DIR / name).read_text()
    path = tmp_path / name
    others = [CONFIG_DIR / "base.yaml"] if name != "base.yaml" else []

    @given(st.one_of(mutated(original), structurally_mutated(original)))
    def run(text):
        path.write_text(text, errors="surrogatepass")
        CASES[f"config {name}"] += 1
        try:
            load_run_config([*others, path])
            OUTCOMES["config loaded"] += 1
        except ConfigError as exc:
            assert str(path) in str(exc) or str(path) in exc.source, exc  # names the file
            OUTCOMES["config refused"] += 1

    run()
    print(f"\nfuzz config {name}: {CASES[f'config {name}']} cases ({dict(OUTCOMES)})")


# --- OpenDRIVE loader -------------------------------------------------------------------------------------
def _lane(lane_id: int, kind: str = "driving", mark: str = "broken") -> str:
    return (
        f'<lane id="{lane_id}" type="{kind}"><link><successor id="{lane_id}"/></link>'
        f'<width sOffset="0" a="3.5" b="0" c="0" d="0"/>'
        f'<roadMark sOffset="0" type="{mark}" color="white" width="0.15"/>'
        f'<speed sOffset="0" max="50" unit="km/h"/></lane>'
    )


def _road(road_id: str, geometry: str, length: float, link: str, junction: int = -1) -> str:
    return (
        f'<road id="{road_id}" length="{length}" junction="{junction}" rule="RHT">\n<link>{link}</link>\n'
        f'<type s="0" type="town"><speed max="50" unit="km/h"/></type>\n'
        f'<planView>\n<geometry s="0" x="{geometry[1]}" y="{geometry[2]}" hdg="{geometry[3]}" length="{length}">\n'
        f'{geometry[0]}\n</geometry>\n</planView>\n<elevationProfile><elevation s="0" a="0" b="0" c="0" d="0"/>'
        f'</elevationProfile>\n<lanes>\n<laneOffset s="0" a="0" b="0" c="0" d="0"/>\n<laneSection s="0">\n'
        f"<left>{_lane(1)}{_lane(2, 'sidewalk', 'solid')}</left>\n"
        f'<center><lane id="0" type="none"><roadMark sOffset="0" type="solid" color="yellow"/></lane></center>\n'
        f"<right>{_lane(-1)}{_lane(-2, 'sidewalk', 'solid')}</right>\n</laneSection>\n</lanes>\n</road>"
    )


SEED_XODR = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<OpenDRIVE>\n'
    '<header revMajor="1" revMinor="4" name="fuzz"><geoReference><![CDATA[+proj=tmerc +lat_0=49 +lon_0=8]]>'
    "</geoReference></header>\n"
    + _road("1", ("<line/>", 0.0, 0.0, 0.0), 50.0, '<successor elementType="junction" elementId="100"/>')
    + "\n"
    + _road(
        "2",
        ('<arc curvature="0.02"/>', 60.0, 0.0, 0.0),
        40.0,
        '<predecessor elementType="junction" elementId="100" contactPoint="start"/>',
    )
    + "\n"
    + _road(
        "3",
        ('<paramPoly3 aU="0" bU="10" cU="0" dU="0" aV="0" bV="0" cV="0" dV="0" pRange="normalized"/>', 50.0, 0.0, 0.0),
        10.0,
        '<predecessor elementType="road" elementId="1" contactPoint="end"/>'
        '<successor elementType="road" elementId="2" contactPoint="start"/>',
        junction=100,
    )
    + "\n"
    + _road("4", ('<spiral curvStart="0" curvEnd="0.01"/>', 0.0, 10.0, 1.0), 30.0, "")
    + '\n<junction id="100" name="j"><connection id="0" incomingRoad="1" connectingRoad="3" contactPoint="start">'
    '<laneLink from="-1" to="-1"/></connection></junction>\n</OpenDRIVE>\n'
)


def test_fuzz_seed_map_is_valid():
    network = RoadNetwork.from_string(SEED_XODR, "seed.xodr")
    assert len(network.driving_lanes()) >= 6


def test_fuzz_opendrive_loader(tmp_path):
    path = tmp_path / "fuzz.xodr"

    @given(mutated(SEED_XODR))
    def run(text):
        path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
        CASES["opendrive"] += 1
        try:
            network = RoadNetwork.from_file(path)
            OUTCOMES["map loaded"] += 1
            for lane in network.driving_lanes():  # what loads is usable: finite geometry
                assert all(math.isfinite(v) for v in lane.centerline.ravel()), lane.key
        except OpenDriveError as exc:
            assert str(exc).startswith(path.name), exc  # names the file (and the line, element)
            OUTCOMES["map refused"] += 1

    run()
    print(
        f"\nfuzz OpenDRIVE: {CASES['opendrive']} cases ({OUTCOMES['map loaded']} loaded, "
        f"{OUTCOMES['map refused']} refused)"
    )
