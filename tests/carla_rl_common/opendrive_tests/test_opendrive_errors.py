"""Bad input fails with OpenDriveError naming file, line and element, never a bare lookup error."""

from __future__ import annotations

import pytest

from carla_rl_common.opendrive import OpenDriveError, RoadNetwork


def line_of(text: str, fragment: str) -> int:
    return text[: text.index(fragment)].count("\n") + 1


def test_malformed_xml_names_file_line_and_open_element(xodr) -> None:
    text = xodr.document(xodr.straight("7")).replace("</planView>", "</planview>")
    with pytest.raises(OpenDriveError) as raised:
        RoadNetwork.from_string(text, "broken.xodr")
    message = str(raised.value)
    assert message.startswith(f"broken.xodr:{line_of(text, '</planview>')}: malformed XML")
    assert "<planView>" in message


def test_unknown_geometry_names_tag_road_and_line(xodr) -> None:
    text = xodr.document(xodr.straight("1"), xodr.road("7", xodr.geometry("<clothoid/>", 0, 0, 0, 10.0), 10.0))
    with pytest.raises(OpenDriveError) as raised:
        RoadNetwork.from_string(text, "Town99.xodr")
    assert (
        str(raised.value)
        == f"Town99.xodr:{line_of(text, '<clothoid')}: <clothoid> in road 7: unsupported geometry <clothoid>"
    )


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("<line/>", '<arc curvature="sharp"/>', "<arc> in road 1: attribute curvature='sharp' is not a number"),
        ("<line/>", "<arc/>", "<arc> in road 1: missing attribute 'curvature'"),
        ("<line/>", '<paramPoly3 pRange="degrees"/>', "<paramPoly3> in road 1: unsupported pRange 'degrees'"),
        (
            '<lane id="-1" type="driving">',
            '<lane id="minus one" type="driving">',
            "<lane> in road 1: attribute id='minus one'",
        ),
        (
            '<width sOffset="0" a="3.5"',
            '<border sOffset="0" a="3.5"',
            "<border> in road 1 lane 1: unsupported lane <border>",
        ),
        ("planView>", "planview>", "<road> in road 1: missing <planView>"),
        ("OpenDRIVE>", "OpenSCENARIO>", "<OpenSCENARIO>: root element must be <OpenDRIVE>"),
        ('junction="-1"', 'junction="J1"', "<road> in road 1: attribute junction='J1' is not an integer"),
        ("unit", "junk", None),  # no unit attribute anywhere: the text stays valid
    ],
)
def test_invalid_content(xodr, old: str, new: str, expected: str | None) -> None:
    text = xodr.document(xodr.straight("1")).replace(old, new)
    if expected is None:
        RoadNetwork.from_string(text, "map.xodr")
        return
    with pytest.raises(OpenDriveError) as raised:
        RoadNetwork.from_string(text, "map.xodr")
    assert expected in str(raised.value)
    assert str(raised.value).startswith("map.xodr:")
    assert isinstance(raised.value, ValueError)


def test_file_errors_use_the_file_name(xodr, tmp_path) -> None:
    path = tmp_path / "Town42.xodr"
    path.write_text(xodr.document(xodr.straight("3")).replace("<line/>", "<spline/>"))
    with pytest.raises(OpenDriveError, match=r"^Town42\.xodr:\d+: <spline> in road 3: unsupported geometry"):
        RoadNetwork.from_file(path)


def test_dangling_links_are_ignored(xodr) -> None:
    lanes = xodr.section(xodr.lane(1), xodr.lane(-1, link='<successor id="-9"/>'))
    road = xodr.straight("1", lanes=lanes, link='<successor elementType="road" elementId="404" contactPoint="start"/>')
    net = RoadNetwork.from_string(xodr.document(road))
    assert all(not lane.successors for lane in net.lanes.values())
