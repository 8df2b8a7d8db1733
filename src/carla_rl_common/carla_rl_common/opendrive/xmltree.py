"""A minimal XML tree that remembers source line numbers, built on the standard library's expat.

``xml.etree.ElementTree`` drops line numbers, and error messages must name the line of the
offending element; expat reports it for every start tag, so no third-party parser is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.parsers import expat

from .errors import OpenDriveError


@dataclass(eq=False)
class Element:
    """One XML element: tag, attributes, children, text and the line of its start tag."""

    tag: str
    attrib: dict[str, str]
    line: int
    children: list[Element] = field(default_factory=list)
    text: str = ""

    def find(self, tag: str) -> Element | None:
        """First child with ``tag``, or ``None``."""
        return next((child for child in self.children if child.tag == tag), None)

    def findall(self, tag: str) -> list[Element]:
        """All children with ``tag``, in document order."""
        return [child for child in self.children if child.tag == tag]


def parse_xml(text: str, source: str) -> Element:
    """Parse ``text`` into an :class:`Element` tree; malformed XML raises :class:`OpenDriveError`."""
    parser = expat.ParserCreate()
    parser.buffer_text = True
    stack: list[Element] = []
    texts: list[list[str]] = []
    root: list[Element] = []

    def start(tag: str, attrib: dict[str, str]) -> None:
        element = Element(tag, attrib, parser.CurrentLineNumber)
        (stack[-1].children if stack else root).append(element)
        stack.append(element)
        texts.append([])

    def end(_tag: str) -> None:
        stack.pop().text = "".join(texts.pop()).strip()

    def characters(data: str) -> None:
        if texts:
            texts[-1].append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    try:
        parser.Parse(text, True)
    except expat.ExpatError as error:
        inside = f"<{stack[-1].tag}> (line {stack[-1].line})" if stack else "document"
        raise OpenDriveError(
            f"{source}:{error.lineno}: malformed XML in {inside}: {expat.ErrorString(error.code)}"
        ) from None
    return root[0]
