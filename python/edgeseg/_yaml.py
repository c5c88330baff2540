"""The one YAML reader of edgeseg: rules, training configs, class maps, any YAML it reads.

PyYAML's ``safe_load`` builds no arbitrary objects, but a hostile or broken file still hurts:

- **alias bombs** ("billion laughs"): a few hundred bytes of nested ``&a``/``*a`` expand to
  billions of values; walking or printing them exhausts memory. Here the document's size
  *with every alias expanded* is counted on the node graph before any Python object is built
  (linear in the file's size) and refused above :data:`MAX_NODES`; recursive aliases are
  refused. Ordinary anchors and merge keys (``<<: *defaults``) keep working.
- **duplicate keys**: PyYAML keeps the last one silently (``max_area_px: 5`` then ``500`` is
  the laxer 500). Here a repeated key is an error naming both lines.
- **size**: documents above :data:`MAX_BYTES` are refused before parsing.
- **messages**: errors quote at most a bounded repr of any value (:func:`edgeseg._text.short`).

Every failure raises the caller's :class:`~edgeseg.errors.EdgesegError` subclass with the file
name and, where the parser knows it, the line and column.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

from edgeseg._text import SHORT_LIMIT, short
from edgeseg.errors import EdgesegError

__all__ = ["MAX_BYTES", "MAX_NODES", "load_yaml", "load_yaml_file"]

#: Largest YAML document read, in bytes (``EDGESEG_MAX_YAML_BYTES`` overrides).
MAX_BYTES = 8 * 1024 * 1024
#: Most values (scalars, lists, mappings) a document may hold once its aliases are expanded
#: (``EDGESEG_MAX_YAML_NODES`` overrides).
MAX_NODES = 1_000_000

_MERGE_TAG = "tag:yaml.org,2002:merge"


def _limit(env: str, default: int) -> int:
    value = os.environ.get(env)
    if not value:
        return default
    try:
        n = int(value)
    except ValueError:
        raise EdgesegError(f"{env}={value!r}: expected a whole number") from None
    if n <= 0:
        raise EdgesegError(f"{env}={value!r}: expected a number > 0")
    return n


def _loader_class():
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader that refuses duplicate keys (with both line numbers)."""

        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen: dict = {}
                for key_node, _ in node.value:
                    if key_node.tag == _MERGE_TAG:
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        first = seen.setdefault(key, key_node)
                    except TypeError:  # unhashable: SafeLoader's own error follows
                        continue
                    if first is not key_node:
                        raise _Duplicate(key, first.start_mark, key_node.start_mark)
            return super().construct_mapping(node, deep=deep)

    return Loader


class _Duplicate(Exception):
    def __init__(self, key, first, again) -> None:
        super().__init__(key)
        self.key, self.first, self.again = key, first, again


_LOADER = None


def _expanded_size(root, max_nodes: int) -> Optional[str]:
    """None when the node graph expands to at most ``max_nodes`` values, else why not.
    Iterative, memoised per node: linear in the number of distinct nodes."""
    import yaml

    size: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            total = 1
            for child in _children(node, yaml):
                total += size[id(child)]
            if total > max_nodes:
                return f"more than {max_nodes} values once its aliases are expanded"
            size[key] = total
            continue
        if key in size:
            continue
        if key in active:
            mark = node.start_mark
            return f"a recursive alias (the value at line {mark.line + 1} contains itself)"
        active.add(key)
        stack.append((node, True))
        for child in _children(node, yaml):
            if id(child) in active:
                mark = child.start_mark
                return f"a recursive alias (the value at line {mark.line + 1} contains itself)"
            if id(child) not in size:
                stack.append((child, False))
    return None


def _children(node, yaml) -> list:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load_yaml(
    text: Union[str, bytes],
    source: str,
    error: type[EdgesegError] = EdgesegError,
    *,
    max_bytes: Optional[int] = None,
    max_nodes: Optional[int] = None,
) -> Any:
    """The value of one YAML document (None for an empty one).

    Args:
        text: the document.
        source: the file name (or a description) that starts every error message.
        error: the EdgesegError subclass to raise (RulesError, DatasetError, ...).
        max_bytes, max_nodes: bounds (default :data:`MAX_BYTES`, :data:`MAX_NODES`, or the
            ``EDGESEG_MAX_YAML_BYTES`` / ``EDGESEG_MAX_YAML_NODES`` environment variables).

    Raises:
        ``error``: invalid YAML (with line and column), a duplicate key (with both lines), a
        document over a bound, or a recursive alias.
    """
    import yaml

    global _LOADER
    max_bytes = max_bytes or _limit("EDGESEG_MAX_YAML_BYTES", MAX_BYTES)
    max_nodes = max_nodes or _limit("EDGESEG_MAX_YAML_NODES", MAX_NODES)
    if len(text) > max_bytes:
        raise error(
            f"{source}: {len(text)} bytes is above the {max_bytes}-byte limit for YAML files; "
            "this is not a configuration file (raise EDGESEG_MAX_YAML_BYTES if it really is)"
        )
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise error(f"{source}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    if _LOADER is None:
        _LOADER = _loader_class()
    loader = None
    try:
        loader = _LOADER(text)  # the reader refuses control characters here already
        node = loader.get_single_node()
        if node is None:
            return None
        why = _expanded_size(node, max_nodes)
        if why is not None:
            raise error(
                f"{source}: the YAML holds {why}; write the values out or use fewer aliases "
                "(raise EDGESEG_MAX_YAML_NODES for a legitimately huge file)"
            )
        return loader.construct_document(node)
    except _Duplicate as d:
        raise error(
            f"{source}: duplicate key {short(d.key)} at line {d.again.line + 1} (first at line "
            f"{d.first.line + 1}); a key may appear once per mapping: remove one of them"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        context = getattr(e, "context", None)
        why = f"{context}, {problem}" if context else str(problem)
        why = why if len(why) <= SHORT_LIMIT else why[: SHORT_LIMIT - 3] + "..."
        raise error(f"{source}: not valid YAML{at}: {why}") from None
    except RecursionError:
        raise error(f"{source}: the YAML is nested too deeply to read") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml_file(
    path: Union[str, Path], error: type[EdgesegError] = EdgesegError, what: str = "file"
) -> Any:
    """:func:`load_yaml` of a file: the size is checked before it is read; an unreadable file
    raises ``error`` naming it."""
    p = Path(path)
    max_bytes = _limit("EDGESEG_MAX_YAML_BYTES", MAX_BYTES)
    try:
        with open(p, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise error(f"{p}: cannot read the {what}: {e.strerror or e}") from None
    if len(data) > max_bytes:
        raise error(
            f"{p}: larger than the {max_bytes}-byte limit for YAML files; this is not a "
            f"{what} (raise EDGESEG_MAX_YAML_BYTES if it really is)"
        )
    return load_yaml(data, str(p), error, max_bytes=max_bytes)
