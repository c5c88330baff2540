"""Class maps: which integer id is which class, and which colour draws it.

A class map is stored as ``classes.yaml``, a list of entries::

    - {id: 0, name: background, color: [0, 0, 0]}
    - {id: 1, name: scratch, color: [255, 0, 0]}

(a mapping ``{classes: [...]}`` is accepted too). Id 0 is background by convention and
:data:`VOID` (255) is the ignore value: a pixel that belongs to no class and that training
and evaluation skip. An entry with id 255 is allowed and only names the colour that marks
void pixels in colour masks; it is not a class. An entry with ``ignore: true`` is a named
void class (``{id: 0, name: unlabeled, ignore: true}``): its pixels read as void, it is not
a class the model learns. Ids, names and colours must be unique.

:meth:`ClassMap.index_lut` is the one dataset-id → class-index lookup (training, evaluation
of .pt and .onnx models) and :meth:`ClassMap.check_known` the one refusal of labels outside
the class map (:class:`~edgeseg.errors.UnknownLabelError`).

CVAT's ``labelmap.txt`` (``name:r,g,b:parts:actions`` per line, ``#`` comments) is read by
:meth:`ClassMap.from_labelmap`; the line order gives the ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np

from edgeseg._text import short
from edgeseg._yaml import load_yaml_file
from edgeseg.errors import DatasetError, UnknownLabelError
from edgeseg.runtime.result import ClassInfo

__all__ = ["VOID", "VOC_VOID_COLOR", "ClassInfo", "ClassMap", "default_color"]

#: Mask value of pixels that belong to no class (ignored by training and metrics).
VOID = 255
#: Colour Pascal VOC (and CVAT's VOC export) uses for void/boundary pixels.
VOC_VOID_COLOR = (224, 224, 192)
_MAX_ID = 65535


def default_color(class_id: int) -> tuple[int, int, int]:
    """The Pascal VOC colour of ``class_id`` (0 is black), used when a class has no colour."""
    r = g = b = 0
    c = int(class_id)
    for j in range(8):
        r |= ((c >> 0) & 1) << (7 - j)
        g |= ((c >> 1) & 1) << (7 - j)
        b |= ((c >> 2) & 1) << (7 - j)
        c >>= 3
    return (r, g, b)


def _parse_color(value, where: str) -> tuple[int, int, int]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)
    ):
        raise DatasetError(
            f"{where}: color {short(value)} is not a list of three integers 0..255; "
            "write it as color: [r, g, b]"
        )
    return (int(value[0]), int(value[1]), int(value[2]))


class ClassMap:
    """An ordered, validated set of :class:`ClassInfo` plus the optional void colour.

    ``classes[i]`` is the i-th class in id order; ``classes.by_id(3)``, ``classes.by_name("crack")``
    and ``classes.by_color((255, 0, 0))`` look entries up; ``len``, iteration and ``in`` (by name)
    work as expected.
    """

    def __init__(
        self,
        classes: Iterable[ClassInfo],
        void_color: Optional[Sequence[int]] = None,
        source: str = "class map",
        ignore: Iterable[ClassInfo] = (),
    ):
        self.source = source
        items = sorted(classes, key=lambda c: c.id)
        ignored = sorted(ignore, key=lambda c: c.id)
        seen_id: dict[int, ClassInfo] = {}
        seen_name: dict[str, ClassInfo] = {}
        seen_color: dict[tuple, ClassInfo] = {}
        for c in items:
            if not isinstance(c.id, int) or isinstance(c.id, bool) or not 0 <= c.id <= _MAX_ID:
                raise DatasetError(
                    f"{source}: id {short(c.id)} of {c.name!r} is not an integer 0..65535"
                )
            if c.id == VOID:
                raise DatasetError(
                    f"{source}: class {c.name!r} uses id 255, the void/ignore value; "
                    "give it another id (255 may only name the void colour)"
                )
            if not isinstance(c.name, str) or not c.name.strip():
                raise DatasetError(f"{source}: class id {c.id} has an empty name; give it a name")
            for table, key, what in (
                (seen_id, c.id, "id"),
                (seen_name, c.name, "name"),
                (seen_color, c.color, "color"),
            ):
                if key in table:
                    raise DatasetError(
                        f"{source}: classes {table[key].name!r} (id {table[key].id}) and "
                        f"{c.name!r} (id {c.id}) share the {what} {key!r}; "
                        f"every class needs its own {what}"
                    )
                table[key] = c
        for c in ignored:
            if not isinstance(c.id, int) or isinstance(c.id, bool) or not 0 <= c.id <= _MAX_ID:
                raise DatasetError(
                    f"{source}: id {short(c.id)} of {c.name!r} is not an integer 0..65535"
                )
            for table, key, what in (
                (seen_id, c.id, "id"),
                (seen_name, c.name, "name"),
                (seen_color, c.color, "color"),
            ):
                if key in table:
                    raise DatasetError(
                        f"{source}: the ignored class {c.name!r} (id {c.id}) shares the {what} "
                        f"{key!r} with {table[key].name!r} (id {table[key].id}); every class, "
                        f"ignored or not, needs its own {what}"
                    )
        ignored_ids = {c.id for c in ignored}
        ignored_names = {c.name for c in ignored}
        if len(ignored_ids) != len(ignored) or len(ignored_names) != len(ignored):
            raise DatasetError(f"{source}: two ignored classes share an id or a name; merge them")
        if not items:
            raise DatasetError(f"{source}: no classes defined; list at least the background class")
        self.void_color = tuple(void_color) if void_color is not None else None
        if self.void_color is not None and self.void_color in seen_color:
            other = seen_color[self.void_color]
            raise DatasetError(
                f"{source}: the void colour {self.void_color} is also the colour of class "
                f"{other.name!r}; pick another colour for one of them"
            )
        self._items: list[ClassInfo] = items
        self._ignored: list[ClassInfo] = ignored
        self._by_id = seen_id
        self._by_name = seen_name
        self._by_color = seen_color

    # -- container protocol -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[ClassInfo]:
        return iter(self._items)

    def __getitem__(self, index: int) -> ClassInfo:
        return self._items[index]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ClassMap)
            and self._items == other._items
            and self.void_color == other.void_color
            and self._ignored == other._ignored
        )

    def __repr__(self) -> str:
        inner = ", ".join(f"{c.id}:{c.name}" for c in self._items)
        void = "".join(f", {c.id}:{c.name} (ignored)" for c in self._ignored)
        return f"ClassMap({inner}{void})"

    # -- lookups -------------------------------------------------------------------------
    @property
    def ids(self) -> list[int]:
        return [c.id for c in self._items]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self._items]

    @property
    def ignored(self) -> list[ClassInfo]:
        """The named void classes: their pixels read as :data:`VOID` (``ignore: true``)."""
        return list(self._ignored)

    @property
    def ignored_ids(self) -> list[int]:
        return [c.id for c in self._ignored]

    def ignored_by_name(self, name: str) -> Optional[ClassInfo]:
        return next((c for c in self._ignored if c.name == name), None)

    def with_ignored(self, names: Iterable[str]) -> ClassMap:
        """This map with the classes ``names`` turned into named void classes.

        Raises:
            DatasetError: A name that is not a class of this map (the message lists them).
        """
        names = list(dict.fromkeys(names))
        if not names:
            return self
        for n in names:
            if n not in self._by_name and self.ignored_by_name(n) is None:
                raise DatasetError(
                    f"{self.source}: cannot ignore {short(n)}: no such class; classes are "
                    f"{self.names}"
                )
        keep = [c for c in self._items if c.name not in names]
        moved = [c for c in self._items if c.name in names]
        if not keep:
            raise DatasetError(
                f"{self.source}: ignoring {names} leaves no class to learn; ignore fewer classes"
            )
        return ClassMap(keep, self.void_color, self.source, [*self._ignored, *moved])

    @property
    def max_id(self) -> int:
        return self._items[-1].id

    @property
    def mask_dtype(self) -> np.dtype:
        """uint8 when every id fits below the void value, uint16 otherwise."""
        return np.dtype(np.uint8) if self.max_id < VOID else np.dtype(np.uint16)

    def by_id(self, class_id: int) -> ClassInfo:
        try:
            return self._by_id[int(class_id)]
        except KeyError:
            raise DatasetError(
                f"{self.source}: no class with id {class_id}; ids are {self.ids}"
            ) from None

    def by_name(self, name: str) -> ClassInfo:
        try:
            return self._by_name[name]
        except KeyError:
            raise DatasetError(
                f"{self.source}: no class named {short(name)}; classes are {self.names}"
            ) from None

    def by_color(self, color: Sequence[int]) -> Optional[ClassInfo]:
        return self._by_color.get(tuple(int(v) for v in color))

    def has_id(self, class_id: int) -> bool:
        return int(class_id) in self._by_id

    def name_of(self, class_id: int) -> str:
        c = self._by_id.get(int(class_id))
        return c.name if c else ("void" if class_id == VOID else f"id {class_id}")

    def index_lut(self, names: Optional[Sequence[str]] = None) -> np.ndarray:
        """``lut[id] -> class index`` over all 16-bit ids (uint8; void and unknown ids → 255).

        Without ``names`` the index is the position in this map's id order (what a model
        trained on it predicts); with ``names`` (a model's classes, in its order) each class
        is matched by name.

        Raises:
            DatasetError: More than 255 classes, or a class of this map that ``names`` lacks.
        """
        if len(self) > VOID:
            raise DatasetError(f"{self.source}: {len(self)} classes; at most 255 are supported")
        if names is None:
            index = {c.name: k for k, c in enumerate(self._items)}
        else:
            index = {n: k for k, n in enumerate(names)}
            missing = [c.name for c in self._items if c.name not in index]
            if missing:
                raise DatasetError(
                    f"{self.source}: classes {missing} are unknown to the model (it knows "
                    f"{list(index)}); evaluate on a dataset with the model's class map"
                )
        lut = np.full(_MAX_ID + 1, VOID, np.uint8)
        for c in self._items:
            lut[c.id] = index[c.name]
        return lut

    def check_known(self, unknown: dict, file: str) -> None:
        """Refuse a decoded label that had values outside this map (``Loaded.unknown``).

        Raises:
            UnknownLabelError: Naming ``file``, the first values with their pixel counts and
                the classes of this map.
        """
        if not unknown:
            return
        found = ", ".join(f"{k} ({v} px)" for k, v in list(unknown.items())[:5])
        err = UnknownLabelError(
            f"{file}: labels outside the class map: {found}; classes are "
            f"{', '.join(f'{c.id}={c.name}' for c in self._items)}. Fix the mask or add the "
            "class to classes.yaml (edgeseg data check lists every such file)"
        )
        err.kind = "unknown_value"
        raise err

    def palette(self) -> np.ndarray:
        """A (256, 3) uint8 palette: row i is the colour of id i (void row = void colour)."""
        pal = np.zeros((256, 3), np.uint8)
        for c in [*self._items, *self._ignored]:
            if c.id < 256:
                pal[c.id] = c.color
        pal[VOID] = self.void_color if self.void_color is not None else VOC_VOID_COLOR
        return pal

    def colorize(self, mask: np.ndarray) -> np.ndarray:
        """HW ids → HW×3 RGB using the class colours (void and unknown ids → void colour)."""
        lut = np.zeros((max(self.max_id, VOID) + 1, 3), np.uint8)
        lut[:] = self.void_color if self.void_color is not None else VOC_VOID_COLOR
        for c in self._items:
            lut[c.id] = c.color
        m = np.asarray(mask)
        return lut[np.clip(m, 0, len(lut) - 1)]

    # -- (de)serialisation -----------------------------------------------------------------
    def to_list(self) -> list[dict]:
        out = [c.to_dict() for c in self._items]
        out += [{**c.to_dict(), "ignore": True} for c in self._ignored]
        if self.void_color is not None:
            out.append({"id": VOID, "name": "void", "color": list(self.void_color)})
        return out

    def save(self, path: Union[str, Path]) -> None:
        """Write ``classes.yaml``."""
        import yaml

        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(self.to_list(), f, sort_keys=False, default_flow_style=None)

    @classmethod
    def from_list(cls, entries, source: str = "class map") -> ClassMap:
        if isinstance(entries, dict) and "classes" in entries:
            entries = entries["classes"]
        if not isinstance(entries, list):
            raise DatasetError(
                f"{source}: expected a list of {{id, name, color}} entries, got "
                f"{type(entries).__name__}; see edgeseg.data.classes for the format"
            )
        classes = []
        ignored: set[int] = set()
        void_color = None
        for n, e in enumerate(entries):
            where = f"{source} entry {n + 1}"
            if not isinstance(e, dict) or "id" not in e or "name" not in e:
                raise DatasetError(f"{where}: {short(e)} needs at least 'id' and 'name'")
            unknown = set(e) - {"id", "name", "color", "ignore"}
            if unknown:
                raise DatasetError(
                    f"{where}: unknown keys {sorted(unknown)}; allowed are id, name, color, ignore"
                )
            if not isinstance(e.get("ignore", False), bool):
                raise DatasetError(f"{where}: ignore {short(e['ignore'])} is not true or false")
            cid = e["id"]
            if not isinstance(cid, int) or isinstance(cid, bool):
                raise DatasetError(f"{where}: id {short(cid)} is not an integer")
            if cid == VOID:
                void_color = _parse_color(e["color"], where) if "color" in e else None
                continue
            color = _parse_color(e["color"], where) if "color" in e else None
            classes.append((cid, str(e["name"]), color))
            if e.get("ignore", False):
                ignored.add(cid)
        used = {c for _, _, c in classes if c is not None}
        infos = []
        for cid, name, color in classes:
            if color is None:
                color = default_color(cid)
                k = cid
                while color in used:  # keep auto colours unique
                    k += 256
                    color = default_color(k)
                used.add(color)
            infos.append(ClassInfo(cid, name, color))
        keep = [c for c in infos if c.id not in ignored]
        void = [c for c in infos if c.id in ignored]
        return cls(keep, void_color=void_color, source=source, ignore=void)

    @classmethod
    def load(cls, path: Union[str, Path]) -> ClassMap:
        """Read and validate ``classes.yaml``; errors name the file and the entry."""
        path = Path(path)
        data = load_yaml_file(path, DatasetError, "class map")
        return cls.from_list(data, source=str(path))

    @classmethod
    def from_names(cls, names: Sequence[str], source: str = "class map") -> ClassMap:
        """Ids in the given order, VOC colours."""
        return cls([ClassInfo(i, n, default_color(i)) for i, n in enumerate(names)], source=source)

    @classmethod
    def from_labelmap(cls, path: Union[str, Path]) -> ClassMap:
        """Read CVAT's ``labelmap.txt``: ``name:r,g,b:parts:actions``; line order = id."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise DatasetError(f"{path}: cannot read labelmap ({e})") from e
        infos = []
        lines = {}
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(":")
            if len(parts) < 2 or not parts[0]:
                raise DatasetError(
                    f"{path}:{lineno}: {short(raw)} is not 'name:r,g,b:parts:actions'; fix the line"
                )
            name = parts[0]
            try:
                rgb = tuple(int(v) for v in parts[1].split(","))
                if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
                    raise ValueError
            except ValueError:
                raise DatasetError(
                    f"{path}:{lineno}: colour {short(parts[1])} of {short(name)} is not 'r,g,b' "
                    "with values 0..255; fix the line"
                ) from None
            if rgb in lines:
                raise DatasetError(
                    f"{path}:{lineno}: {short(name)} has the colour {','.join(map(str, rgb))} "
                    f"already used by {lines[rgb][1]!r} on line {lines[rgb][0]}; masks could not "
                    "tell them apart, give each label its own colour in CVAT and export again"
                )
            lines[rgb] = (lineno, name)
            infos.append(ClassInfo(len(infos), name, rgb))
        return cls(infos, source=str(path))

    def labelmap_text(self) -> str:
        """CVAT ``labelmap.txt`` text (ids must be 0..n-1 for CVAT to keep them)."""
        lines = ["# label:color_rgb:parts:actions"]
        for c in self._items:
            lines.append(f"{c.name}:{c.color[0]},{c.color[1]},{c.color[2]}::")
        return "\n".join(lines) + "\n"
