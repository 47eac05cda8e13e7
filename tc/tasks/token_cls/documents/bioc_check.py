"""What a file must be before the ``bioc`` package reads it as a BioC collection (XML or JSON).

``bioc`` trusts its input: an HTML page read as BioC XML is an empty collection, a passage offset
``"x"`` in BioC JSON becomes a string offset that fails later (``TypeError: '<=' not supported``), a
list where an object belongs fails deep inside the decoder. These checks run first and refuse such a
file in one line naming the document and passage (and, in XML, the line): the root is
``<collection>`` (JSON: an object with a ``"documents"`` list), offsets and lengths are whole numbers
from 0, every object and list is where BioC puts one, and every JSON string is valid Unicode. An empty
collection is fine. The JSON shape is declared once, as pydantic models in strict mode (no ``"5"`` for
5, no ``true`` for 1); other keys are allowed and kept, as ``bioc`` keeps what it knows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tc.core.errors import DataError, first_line
from tc.tasks.token_cls.textio import json_path, unicode_problem

__all__ = ["check_bioc_json", "check_bioc_xml"]

Offset = int
Id = str | int


class _Shape(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class _Location(_Shape):
    offset: Offset = Field(ge=0)
    length: Offset = Field(ge=0)


class _Node(_Shape):
    refid: Id
    role: str


class _Relation(_Shape):
    id: Id
    infons: dict[str, Any]
    nodes: list[_Node]


class _Annotation(_Shape):
    id: Id
    infons: dict[str, Any]
    text: str | None
    locations: list[_Location]


class _Sentence(_Shape):
    offset: Offset = Field(ge=0)
    infons: dict[str, Any]
    text: str | None
    annotations: list[_Annotation]
    relations: list[_Relation]


class _Passage(_Shape):
    offset: Offset = Field(ge=0)
    infons: dict[str, Any]
    text: str | None = None
    sentences: list[_Sentence]
    annotations: list[_Annotation]
    relations: list[_Relation]


class _Document(_Shape):
    id: Id
    infons: dict[str, Any]
    passages: list[_Passage]
    annotations: list[_Annotation] = []
    relations: list[_Relation]


class _Collection(_Shape):
    source: str | None
    date: str | None
    key: str | None
    version: str | None = None
    infons: dict[str, Any]
    documents: list[_Document]


_NAMED = {"documents": "document", "annotations": "annotation", "relations": "relation"}
"""Lists whose items are named by their ``id`` (others by their number from 1: passage 2, location 1)."""
_NUMBERED = {"passages": "passage", "sentences": "sentence", "locations": "location", "nodes": "node"}


def _where(obj: Any, loc: tuple[str | int, ...]) -> tuple[str, tuple[str | int, ...]]:
    """``("document 17: passage 2", ("offset",))``: the BioC objects along ``loc`` in words, and the rest
    of ``loc`` (a field of the last one)."""
    names: list[str] = []
    at = 0
    while at + 1 < len(loc) and loc[at] in {**_NAMED, **_NUMBERED} and isinstance(loc[at + 1], int):
        key, index = loc[at], loc[at + 1]
        assert isinstance(key, str) and isinstance(index, int)
        obj = obj[key][index] if isinstance(obj, dict) and isinstance(obj.get(key), list) else None
        ident = obj.get("id") if isinstance(obj, dict) else None
        if key in _NAMED and isinstance(ident, str | int) and not isinstance(ident, bool):
            names.append(f"{_NAMED[key]} {ident}")
        else:
            names.append(f"{_NAMED.get(key) or _NUMBERED[key]} {'number ' if key in _NAMED else ''}{index + 1}")
        at += 2
    return ": ".join(names), loc[at:]


_MUST = {"dict_type": "must be an object", "model_type": "must be an object", "list_type": "must be a list",
         "int_type": "must be a whole number", "int_from_float": "must be a whole number",
         "greater_than_equal": "must be a whole number from 0", "string_type": "must be a string"}


def _field(obj: Any, loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """The steps of a pydantic error location that exist in ``obj`` (plus a missing field's name): pydantic
    adds the member of a union (``("id", "str")``), which is no place in the file."""
    out: list[str | int] = []
    for step in loc:
        if isinstance(obj, dict) and isinstance(step, str):
            out.append(step)
            if step not in obj:
                break
            obj = obj[step]
        elif isinstance(obj, list) and isinstance(step, int) and step < len(obj):
            out.append(step)
            obj = obj[step]
        else:
            break
    return tuple(out)


def _got(value: Any) -> str:
    shown = json.dumps(value, ensure_ascii=False) if unicode_problem(value) is None else repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def check_bioc_json(obj: Any, path: Path) -> None:
    """Refuse what ``json.loads`` made of a ``.json`` file unless it is a BioC JSON collection (see the
    module docstring); the message names the document, passage, annotation ... and the field."""
    if not isinstance(obj, dict) or not isinstance(obj.get("documents"), list):
        top = "an object without a \"documents\" list" if isinstance(obj, dict) else f"a JSON {type(obj).__name__}"
        raise DataError(f"{path}: not a BioC JSON collection (the top level is {top}; BioC JSON is an object "
                        "with source, date, key, infons and a \"documents\" list)")
    try:
        _Collection.model_validate(obj)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        loc = _field(obj, tuple(error["loc"]))
        where, rest = _where(obj, loc)
        if error["type"] == "missing":
            detail = "is missing"
        else:
            must = _MUST.get(error["type"], error["msg"])
            if rest and rest[-1] in ("id", "refid") and error["type"] in ("string_type", "int_type"):
                must = "must be a string or a whole number"
            elif rest and rest[-1] == "text" and error["type"] == "string_type":
                must = "must be a string (or null)"
            detail = f"{must} (got {_got(error['input'])})"
        raise DataError(f"{path}: {_joined(where, json_path(rest))} {detail}") from None
    found = unicode_problem(obj)
    if found is not None:
        where, rest = _where(obj, found[0])
        raise DataError(f"{path}: {_joined(where, json_path(rest))} {found[1]}")


def _joined(where: str, field: str) -> str:
    """``document 1: passage 2: "offset"``, ``document 1: passage 2`` or ``"documents"``."""
    return f"{where}: {field}" if where and field else where or field or "the collection"


def _xml_where(elem: Any) -> str:
    """``document 17: passage 2: annotation T3`` for an element of a BioC XML tree."""
    names: list[str] = []
    while elem is not None and elem.tag != "collection":
        if elem.tag in ("document", "annotation", "relation"):
            ident = elem.findtext("id") if elem.tag == "document" else elem.get("id")
            names.append(f"{elem.tag} {ident}")
        elif elem.tag in ("passage", "sentence"):
            parent = elem.getparent()
            mine = parent.index(elem)
            names.append(f"{elem.tag} {sum(1 for e in parent.iterchildren(elem.tag) if parent.index(e) <= mine)}")
        elem = elem.getparent()
    return ": ".join(reversed(names))


def _whole(value: str | None) -> bool:
    return value is not None and value.strip().isascii() and value.strip().isdigit()


def check_bioc_xml(path: Path) -> None:
    """Refuse an XML file unless it is a BioC collection (see the module docstring): ``path:line`` and the
    document and passage of a bad offset, the root element of a look-alike (an HTML page)."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        root = etree.parse(str(path), parser).getroot()
    except etree.XMLSyntaxError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid XML ({first_line(exc)})") from None
    if root.tag != "collection":
        name = etree.QName(root).localname if isinstance(root.tag, str) else str(root.tag)
        raise DataError(f"{path}:{root.sourceline}: not a BioC collection (the root element is <{name}>, not "
                        "<collection>)")
    for elem in root.iter("passage", "sentence"):
        offset = elem.find("offset")
        if offset is None or not _whole(offset.text):
            problem = "has no <offset>" if offset is None else f"<offset> {offset.text!r} is not a whole number from 0"
            line = elem.sourceline if offset is None else offset.sourceline
            raise DataError(f"{path}:{line}: {_xml_where(elem)}: {problem}")
    for elem in root.iter("location"):
        for name in ("offset", "length"):
            if not _whole(elem.get(name)):
                value = elem.get(name)
                problem = f"no {name}" if value is None else f"{name} {value!r} is not a whole number from 0"
                raise DataError(f"{path}:{elem.sourceline}: {_xml_where(elem.getparent())}: location {problem}")
