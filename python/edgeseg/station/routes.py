"""The station's own endpoints on its :class:`~edgeseg.server.HttpServer`.

- ``GET /healthz``: 200 while the process serves (no token needed).
- ``GET /readyz``: 200 when every camera runs and delivers, its model is loaded and its
  outboxes are below ``ready.max_outbox``; else 503 with the reasons.
- ``GET /metrics``: the telemetry module's Prometheus text (404 where it is not installed).
- ``GET /v1/status``: every camera's state, stats and the last reload, as JSON.
- ``POST /v1/segment[?camera=NAME][&format=json|mask|overlay]``: an image (PNG, JPEG, BMP,
  TIFF, WebP; the raw body) in; JSON counts, area fractions, regions and the verdict of the
  camera's rules, or a PNG of the mask or the overlay. 400 for what is not an image, 413
  above ``http.max_image_bytes`` or ``http.max_image_pixels``.
- ``GET /``: a page that links every camera's live view (``/cameras/NAME/``);
  ``POST /v1/cameras/NAME/trigger``: the HTTP trigger of a camera with ``trigger: http``.
"""

from __future__ import annotations

import html
import io
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseg._redact import redact
from edgeseg.errors import EdgesegError
from edgeseg.sinks.encode import encode_record

if TYPE_CHECKING:
    from edgeseg.server import HttpServer
    from edgeseg.station.station import Station

__all__ = ["add_station_routes", "decode_image", "segment_json"]

FORMATS = ("json", "mask", "overlay")


def _json(data: Any, status: int = 200):
    from aiohttp import web

    return web.Response(
        status=status,
        body=encode_record(data).encode(),
        content_type="application/json",
    )


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """BGR uint8 pixels of an encoded image; ValueError with the reason (not an image, too
    many pixels: checked from the header, before decoding)."""
    import cv2
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ValueError("the body is empty; POST the image file itself (PNG, JPEG, ...)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            kind = im.format
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise ValueError(
            "the body is not an image this server reads (PNG, JPEG, BMP, TIFF, WebP); POST the "
            "file's bytes as the body (curl --data-binary @part.png)"
        ) from None
    if w * h > max_pixels:
        raise OverflowError(
            f"the {kind} image is {w}×{h} = {w * h} pixels; the limit is {max_pixels} "
            "(http.max_image_pixels)"
        )
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise ValueError(f"the {kind} image could not be decoded (truncated or corrupt?)")
    return img


def segment_json(result, verdict, min_region: int = 1, max_regions: int = 100) -> dict:
    """The JSON answer of ``/v1/segment``: counts, area fractions, regions, verdict."""
    regions = []
    if result.valid:
        for c in result.classes[1:]:
            for r in result.regions(c.name, min_area=min_region)[:max_regions]:
                regions.append(
                    {
                        "class": r.class_name,
                        "area_px": int(r.area),
                        "bbox": [int(v) for v in r.bbox],
                        "centroid": [round(float(v), 2) for v in r.centroid],
                        "mean_confidence": None
                        if r.mean_confidence is None
                        else round(float(r.mean_confidence), 4),
                    }
                )
    return {
        "width": int(result.shape[1]),
        "height": int(result.shape[0]),
        "counts": result.counts,
        "area_fraction": {k: round(float(v), 6) for k, v in result.area_fraction.items()},
        "regions": regions,
        "verdict": None if verdict is None else verdict.label,
        "reasons": [] if verdict is None else list(verdict.reasons),
        "valid": bool(result.valid),
        "invalid_reason": result.invalid_reason,
        "timings_ms": {k: round(float(v), 3) for k, v in result.timings.items()},
    }


def _png(img: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError(f"cv2.imencode failed for a {img.shape} picture")
    return buf.tobytes()


def _mask_png(result) -> bytes:
    """The class map as a palette PNG (pixel value = class index)."""
    from PIL import Image

    img = Image.fromarray(result.class_map, mode="P")
    pal = result.palette(rgb=True).reshape(-1).tolist()
    img.putpalette(pal + [0] * (768 - len(pal)))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def add_station_routes(server: HttpServer, station: Station) -> None:
    """Mounts the endpoints of the module docstring."""
    from aiohttp import web

    from edgeseg.server.http import read_body

    cfg = station.config

    async def healthz(request):
        return _json({"status": "alive", "station": cfg.name})

    async def readyz(request):
        problems = station.problems()
        return _json({"ready": not problems, "reasons": problems}, 503 if problems else 200)

    async def metrics(request):
        if not cfg.metrics:
            return web.Response(status=404, text="404: metrics are off (metrics.enabled)\n")
        try:
            from edgeseg.telemetry import render  # type: ignore[import-not-found]
        except ImportError:
            return web.Response(
                status=404,
                text="404: metrics need the telemetry module (edgeseg.telemetry), which is "
                "not part of this installation\n",
            )
        body, ctype = render()
        return web.Response(body=body, headers={"Content-Type": ctype})

    async def status(request):
        return _json(station.status())

    async def index(request):
        rows = []
        for name, cam in station.cameras.items():
            st = cam.status()
            link = (
                f'<a href="cameras/{html.escape(name)}/">{html.escape(name)}</a>'
                if st["live_view"]
                else html.escape(name)
            )
            why = html.escape(st["reason"] or "")
            rows.append(
                f"<tr><td>{link}</td><td>{html.escape(st['state'])}</td>"
                f"<td>{st['frames']}</td><td>{html.escape(str(st['last_verdict']))}</td>"
                f"<td>{why}</td></tr>"
            )
        page = (
            "<!doctype html><html lang=en><meta charset=utf-8><title>edgeseg station "
            f"{html.escape(cfg.name)}</title><h1>station {html.escape(cfg.name)}</h1>"
            "<table><tr><th>camera</th><th>state</th><th>frames</th><th>verdict</th>"
            f"<th>reason</th></tr>{''.join(rows)}</table>"
            '<p><a href="v1/status">status (JSON)</a> · <a href="readyz">ready</a></p></html>'
        )
        return web.Response(text=page, content_type="text/html")

    async def segment(request):
        fmt = request.query.get("format", "json")
        if fmt not in FORMATS:
            return _json({"error": f"format={fmt!r}: expected one of {list(FORMATS)}"}, 400)
        camera = request.query.get("camera")
        try:
            seg, rules = station.segmenter(camera)
        except KeyError:
            known = sorted(station.cameras)
            return _json({"error": f"camera {camera!r}: no such camera; cameras: {known}"}, 404)
        except EdgesegError as e:
            return _json({"error": redact(str(e))}, 503 if camera else 400)
        body = await read_body(request, cfg.http.max_image_bytes, cfg.http.request_timeout)
        try:
            img = await server.run_blocking(decode_image, body, cfg.http.max_image_pixels)
        except OverflowError as e:
            return _json({"error": str(e)}, 413)
        except ValueError as e:
            return _json({"error": str(e)}, 400)

        def run():
            result = seg.predict(img)
            verdict = None
            if rules is not None:
                from edgeseg.rules.invalid import invalid_verdict, is_valid

                verdict = rules.evaluate(result) if is_valid(result) else None
                if not is_valid(result):
                    verdict = invalid_verdict(result, "ng")
            if fmt == "mask":
                return _mask_png(result)
            if fmt == "overlay":
                over = result.overlay(0.5)
                return _png(over[:, :, ::-1] if result.rgb else over)
            return segment_json(result, verdict)

        out = await server.run_blocking(run)
        if isinstance(out, bytes):
            return web.Response(body=out, content_type="image/png")
        return _json(out)

    server.add_route("GET", "/healthz", healthz, auth=False)
    server.add_route("GET", "/readyz", readyz)
    server.add_route("GET", "/metrics", metrics)
    server.add_route("GET", "/v1/status", status)
    server.add_route("POST", "/v1/segment", segment)
    server.add_route("GET", "/", index)
