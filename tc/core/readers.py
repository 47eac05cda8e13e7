"""Safe readers for the YAML and JSON files a user hands tc (configs, label maps, task files).

Both parsers build plain values only and refuse what they would otherwise accept silently: a key given
twice in one mapping. PyYAML and ``json`` keep the last value of a duplicate key, so a second
``train_input:`` block, or a label listed twice in ``label2id.json``, would drop data without a word.
"""

from __future__ import annotations

import errno
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tc.core.errors import ConfigError, DataError, TcError

BOM = "\ufeff"


class DuplicateKey(Exception):
    """Raised inside the parsers; the caller, who knows the file, turns it into a one-line TcError."""

    def __init__(self, key: Any, line: int | None, first: int | None) -> None:
        super().__init__(key)
        self.key, self.line, self.first = key, line, first

    def message(self, path: Path | str) -> str:
        where = f"{path}:{self.line}" if self.line else str(path)
        first = f" (first at line {self.first})" if self.first else ""
        return f"{where}: duplicate key {self.key!r}{first}; a key may appear once per mapping"


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (plain values, no tags that build objects) that refuses a key given twice in one
    mapping, at any depth. ``<<`` merge keys still override what they merge, as YAML defines."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # an unhashable key: the base constructor reports it
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKey(key, line, seen[key])
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str) -> Any:
    """One YAML document, read with :class:`UniqueKeyLoader` (this is what ``yaml.safe_load`` does, with
    the duplicate-key check)."""
    loader = UniqueKeyLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a YAML config safely; syntax errors and duplicate keys name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a YAML config file") from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not valid UTF-8 (byte 0x{exc.object[exc.start]:02x})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from None
    try:
        data = parse_yaml(text)
    except DuplicateKey as exc:
        raise ConfigError(exc.message(path)) from None
    except yaml.constructor.ConstructorError as exc:  # e.g. !!python/object: the safe loader builds no objects
        mark = exc.problem_mark
        where = f":{mark.line + 1}" if mark else ""
        tag = re.search(r"tag '([^']*)'", exc.problem or "")
        if tag is None:
            raise ConfigError(f"{path}{where}: YAML error: {exc.problem or exc}") from None
        shown = tag.group(1).replace("tag:yaml.org,2002:", "!!")
        raise ConfigError(f"{path}{where}: YAML tag {shown} is not allowed; configs hold plain values only "
                          "(tc reads them with yaml.safe_load)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: YAML syntax error: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def yaml_line(path: Path, loc: Sequence[Any], exact: bool = False) -> int | None:
    """1-based line of key ``loc`` (or of its deepest ancestor present, unless ``exact``) in a YAML file;
    None if absent.

    Uses ``yaml.compose``: nodes with marks, nothing constructed."""
    try:
        node = yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    line = None
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            return None if exact else line
        match = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None)
        if match is None:
            return None if exact else line
        key = next(k for k, v in node.value if v is match)
        line, node = key.start_mark.line + 1, match
    return line


def _json_pairs(text: str) -> Any:
    """``object_pairs_hook`` that refuses a duplicate key, finding the line of its second occurrence."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                quoted = re.escape(json.dumps(key)[1:-1])
                lines = [text[: m.start()].count("\n") + 1 for m in re.finditer(f'"{quoted}"\\s*:', text)]
                raise DuplicateKey(key, lines[1] if len(lines) > 1 else None, lines[0] if lines else None)
            out[key] = value
        return out

    return hook


def parse_json(text: str, path: Path | str, error: type[TcError], line: int = 1) -> Any:
    """JSON from a file tc did not necessarily write: a syntax error or a duplicate key is one ``error``
    naming ``path`` and the line. ``line`` is the file line ``text`` starts on (a JSONL record's)."""
    try:
        return json.loads(text, object_pairs_hook=_json_pairs(text))
    except DuplicateKey as exc:
        exc.line = exc.line and exc.line + line - 1
        exc.first = exc.first and exc.first + line - 1
        raise error(exc.message(path)) from None
    except json.JSONDecodeError as exc:
        raise error(f"{path}:{exc.lineno + line - 1}: not valid JSON ({exc.msg})") from None
    except ValueError:  # json.loads turns an integer literal longer than Python's limit into this
        raise error(f"{path}:{line}: not valid JSON (an integer of more than {sys.get_int_max_str_digits()} "
                    "digits)") from None
    except RecursionError:
        raise error(f"{path}: JSON nested too deeply") from None


def not_a_file(path: Path, expected: str = "data file") -> str | None:
    """What ``path`` is when something is there but it is not a regular file (a directory, a broken or
    looping symlink, a FIFO or device); None for a regular file or for nothing at all. ``expected`` names
    what a directory was taken for."""
    if path.is_symlink():
        try:
            path.stat()
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "is a symlink loop (it never reaches a file)"
            return f"is a broken symlink: its target {os.readlink(path)} does not exist"
    if path.is_dir():
        return f"is a directory, expected a {expected}"
    if path.exists() and not path.is_file():
        return "is not a regular file (a FIFO, socket or device)"
    return None


def read_text(path: Path, what: str = "file", expected: str | None = None) -> tuple[str, bool]:
    """``(text, had_bom)`` of ``path``; a missing file (``<what> not found``), an unreadable or non-UTF-8 one,
    and what is not a regular file (a FIFO would block the read forever; a directory is "expected a
    <expected, else what>") are user errors naming the path."""
    path = Path(path)
    odd = not_a_file(path, expected or what)
    if odd is not None:
        raise DataError(f"{path}: {odd}")
    if not path.exists():
        raise DataError(f"{path}: {what} not found")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x})") from None
    if text.startswith(BOM):
        return text[1:], True
    return text, False
