"""Aravis 0.8 (GenICam: GigE Vision, USB3 Vision) from Python: loading it, finding cameras.

Aravis is reached through PyGObject (``gi``), which reads Aravis's GObject introspection data
(``Aravis-0.8.typelib``). Debian and Ubuntu ship both as packages (``python3-gi``,
``gir1.2-aravis-0.8``) built for the system Python; a virtual environment of the same CPython
minor version can use that ``gi`` as is, so :func:`load_aravis` falls back to it when ``gi`` is
not importable in the running environment (the ABI check is the extension's file name, e.g.
``_gi.cpython-311-x86_64-linux-gnu.so``, against this interpreter's extension suffixes).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

from edgeseg.camera.genicam_formats import SUPPORTED_FORMATS
from edgeseg.errors import SourceError

__all__ = [
    "INSTALL_HINT",
    "camera_features",
    "configure_camera",
    "device_features",
    "list_devices",
    "load_aravis",
    "stream_counters",
]

#: What to install, for error messages.
INSTALL_HINT = (
    "on Debian/Ubuntu: sudo apt-get install python3-gi gir1.2-aravis-0.8 "
    "(+ aravis-tools for the arv-fake-gv-camera-0.8 simulator); elsewhere: Aravis 0.8 with "
    "its introspection data and `pip install PyGObject` (`'PyGObject<3.50'` with GLib < 2.80)"
)

_SYSTEM_SITE_DIRS = (
    "/usr/lib/python3/dist-packages",
    f"/usr/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages",
    f"/usr/lib64/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages",
)
_LOCK = threading.Lock()
_CACHE: dict[tuple[str, str], tuple[ModuleType, ModuleType]] = {}


def _system_gi() -> Optional[ModuleType]:
    """The distribution's ``gi`` package when its extension fits this interpreter, else None."""
    for base in _SYSTEM_SITE_DIRS:
        pkg = Path(base) / "gi"
        if not (pkg / "__init__.py").is_file():
            continue
        if not any((pkg / f"_gi{sfx}").is_file() for sfx in importlib.machinery.EXTENSION_SUFFIXES):
            continue
        spec = importlib.util.spec_from_file_location(
            "gi", pkg / "__init__.py", submodule_search_locations=[str(pkg)]
        )
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        sys.modules["gi"] = module
        try:
            spec.loader.exec_module(module)
        except Exception:  # a broken or foreign installation: try the next one
            sys.modules.pop("gi", None)
            continue
        return module
    return None


def _import_gi(context: str) -> ModuleType:
    try:
        import gi

        return gi
    except ImportError:
        pass
    gi = _system_gi()
    if gi is None:
        raise SourceError(
            f"{context}: GenICam cameras need PyGObject (Python module 'gi'), which this Python "
            f"({sys.version.split()[0]}, {sys.executable}) cannot import, and no system 'gi' "
            f"built for this Python version was found; {INSTALL_HINT}"
        )
    return gi


def load_aravis(context: str = "genicam", version: str = "0.8") -> tuple[Any, Any]:
    """``(Aravis, GLib)`` introspection modules; SourceError naming ``context`` and the package
    to install when PyGObject or Aravis ``version``'s typelib is missing."""
    key = ("Aravis", version)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        gi = _import_gi(context)
        try:
            gi.require_version("Aravis", version)
            gi.require_version("GLib", "2.0")
            from gi.repository import Aravis, GLib
        except (ValueError, ImportError) as exc:
            raise SourceError(
                f"{context}: Aravis {version} introspection data (Aravis-{version}.typelib) not "
                f"found ({exc}); install gir1.2-aravis-{version} — {INSTALL_HINT}"
            ) from exc
        _CACHE[key] = (Aravis, GLib)
        return Aravis, GLib


def list_devices(context: str = "edgeseg cameras") -> list[dict]:
    """The GenICam devices Aravis discovers now (GigE Vision broadcast, USB3 Vision bus scan).

    Each entry: ``id`` (what ``genicam://ID`` takes), ``vendor``, ``model``, ``serial``,
    ``protocol`` (GigEVision / USB3Vision), ``address`` (IP or USB path), ``physical_id``.
    Discovery waits about one second for GigE Vision replies.
    """
    aravis, _ = load_aravis(context)
    aravis.update_device_list()
    out = []
    for i in range(aravis.get_n_devices()):
        out.append(
            {
                "id": aravis.get_device_id(i),
                "vendor": aravis.get_device_vendor(i),
                "model": aravis.get_device_model(i),
                "serial": aravis.get_device_serial_nbr(i),
                "protocol": aravis.get_device_protocol(i),
                "address": aravis.get_device_address(i),
                "physical_id": aravis.get_device_physical_id(i),
            }
        )
    return out


def _try(fn, *args):
    try:
        return fn(*args)
    except Exception:  # a feature the camera lacks (GLib.Error) reads as None
        return None


def _bounds(pair) -> Optional[list]:
    return None if pair is None else [pair[0], pair[1]]


def camera_features(cam) -> dict:
    """The main features of an open ``Aravis.Camera`` (absent ones are None)."""
    dev = cam.get_device()
    region = _try(cam.get_region)
    sensor = _try(cam.get_sensor_size)
    feats = {
        "vendor": _try(cam.get_vendor_name),
        "model": _try(cam.get_model_name),
        "serial": _try(cam.get_device_serial_number),
        "firmware": _try(dev.get_string_feature_value, "DeviceVersion"),
        "protocol": "GigEVision"
        if cam.is_gv_device()
        else "USB3Vision"
        if cam.is_uv_device()
        else None,
        "sensor_size": list(sensor) if sensor else None,
        "region": list(region) if region else None,
        "pixel_format": _try(cam.get_pixel_format_as_string),
        "pixel_formats": _try(cam.dup_available_pixel_formats_as_strings),
        "exposure_us": _try(cam.get_exposure_time),
        "exposure_bounds_us": _bounds(_try(cam.get_exposure_time_bounds)),
        "gain_db": _try(cam.get_gain),
        "gain_bounds_db": _bounds(_try(cam.get_gain_bounds)),
        "fps": _try(cam.get_frame_rate),
        "fps_bounds": _bounds(_try(cam.get_frame_rate_bounds)),
        "trigger_sources": _try(cam.dup_available_enumerations_as_strings, "TriggerSource"),
        "trigger_mode": _try(cam.get_string, "TriggerMode"),
        "trigger_source": _try(cam.get_string, "TriggerSource"),
        "software_trigger": bool(_try(cam.is_software_trigger_supported)),
        "timestamp_tick_hz": _try(dev.get_timestamp_tick_frequency),
        "packet_size": _try(cam.gv_get_packet_size) if cam.is_gv_device() else None,
    }
    return feats


def device_features(device_id: Optional[str], context: str = "edgeseg cameras") -> dict:
    """:func:`camera_features` of the device ``device_id`` (first one when None); SourceError
    when it is not found."""
    aravis, glib = load_aravis(context)
    aravis.update_device_list()
    try:
        cam = aravis.Camera.new(device_id)
    except glib.Error as exc:
        found = [aravis.get_device_id(i) for i in range(aravis.get_n_devices())]
        raise SourceError(
            f"{context}: cannot open camera {device_id or '(first)'}: {exc.message}; "
            f"devices found: {found or 'none'}"
        ) from exc
    try:
        return camera_features(cam)
    finally:
        del cam


def configure_camera(cam, opts: dict, uri: str) -> None:
    """Applies :func:`~edgeseg.camera.genicam_uri.parse_genicam_uri`'s options to an open
    ``Aravis.Camera`` in an order that keeps each one (frame rate before triggers:
    Aravis's set_frame_rate switches FrameStart triggering off). SourceError naming ``uri``,
    the option and what the camera offers when one is rejected."""
    aravis, glib = load_aravis(uri)

    def apply(name: str, value, fn, *args) -> None:
        try:
            fn(*args)
        except glib.Error as exc:
            raise SourceError(f"{uri}: cannot set {name}={value}: {exc.message}") from exc

    if "packet_size" in opts:
        if not cam.is_gv_device():
            raise SourceError(f"{uri}: packet_size applies to GigE Vision cameras only")
        apply("packet_size", opts["packet_size"], cam.gv_set_packet_size, opts["packet_size"])
    if "pixel_format" in opts:
        fmt = opts["pixel_format"]
        available = list(cam.dup_available_pixel_formats_as_strings() or [])
        if fmt not in available:
            usable = [f for f in available if f in SUPPORTED_FORMATS]
            raise SourceError(
                f"{uri}: the camera has no pixel_format {fmt}; it offers {available}, "
                f"of which edgeseg converts {usable}"
            )
        apply("pixel_format", fmt, cam.set_pixel_format_from_string, fmt)
    else:
        current = cam.get_pixel_format_as_string()
        if current not in SUPPORTED_FORMATS:
            usable = [
                f
                for f in cam.dup_available_pixel_formats_as_strings() or []
                if f in SUPPORTED_FORMATS
            ]
            raise SourceError(
                f"{uri}: the camera sends {current}, which edgeseg cannot convert; "
                f"choose one with ?pixel_format= from {usable}"
            )
    apply("trigger", "off", cam.clear_triggers)
    for name, setter, auto in (
        ("fps", cam.set_frame_rate, None),
        ("exposure", cam.set_exposure_time, cam.set_exposure_time_auto),
        ("gain", cam.set_gain, cam.set_gain_auto),
    ):
        if name not in opts:
            continue
        if auto is not None and _is_true(cam, f"is_{name}_auto_available"):
            apply(name, "manual", auto, aravis.Auto.OFF)
        apply(name, opts[name], setter, opts[name])
    trig = opts["trigger"]
    if trig != "off":
        sources = list(cam.dup_available_enumerations_as_strings("TriggerSource") or [])
        wanted = "Software" if trig == "software" else f"Line{trig[4:]}"
        match = next((s for s in sources if s.lower() == wanted.lower()), None)
        if match is None:
            raise SourceError(
                f"{uri}: trigger={trig}: the camera has no trigger source {wanted}; "
                f"it offers {sources}"
            )
        apply("trigger", trig, cam.set_trigger, match)


_STREAM_INFOS = {
    "underruns": "n_underruns",
    "missing_packets": "n_missing_packets",
    "resent_packets": "n_resent_packets",
    "stream_failures": "n_failures",
}


def stream_counters(stream) -> dict:
    """Aravis's counters of one stream (``underruns``: frames that found no free buffer,
    ``missing_packets``, ``resent_packets``, ``stream_failures``: buffers not completed)."""
    out = dict.fromkeys(_STREAM_INFOS, 0)
    for key, name in _STREAM_INFOS.items():
        try:
            out[key] = int(stream.get_info_uint64_by_name(name))
        except Exception:  # an info this Aravis build lacks
            pass
    return out


def _is_true(cam, method: str) -> bool:
    try:
        return bool(getattr(cam, method)())
    except Exception:  # GLib.Error: feature absent
        return False
