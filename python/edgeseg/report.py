"""``report.html``: the page a person opens first after ``make demo``.

``write_report(out_dir, **sections)`` renders one self-contained HTML page (plots as PNG
files next to it, written with matplotlib's Agg backend) from the artifacts of a run:
dataset QA, training curves, FP32 vs INT8 per-class IoU, loop latency/FPS per stage,
example overlays with confidence, the verdict log, and links to every artifact. Every link
is relative to ``out_dir`` and checked to exist (:func:`report_links` lists them).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from edgeseg._text import printable

__all__ = ["report_links", "write_report"]

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right} th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
.ok{color:#137333;font-weight:600} .ng{color:#b3261e;font-weight:600} .note{color:#555}
img{max-width:100%} .grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));
gap:10px} figure{margin:0} figcaption{font-size:.85em;color:#555}
"""


def _e(v) -> str:
    return html.escape(str(v))


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return _e(v)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _training_section(metrics: dict, assets: Path, out: Path) -> str:
    hist = metrics.get("history") or []
    if not hist:
        return "<p class=note>no training history</p>"
    plt = _plt()
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.4))
    ep = [h["epoch"] for h in hist]
    ax[0].plot(ep, [h["train_loss"] for h in hist], "o-")
    ax[0].set(title="training loss", xlabel="epoch")
    ax[1].plot(ep, [h["val_miou"] for h in hist], "o-", label="mIoU")
    for name in hist[-1].get("per_class_iou", {}):
        ax[1].plot(ep, [h["per_class_iou"].get(name) or 0 for h in hist], "--", label=name)
    ax[1].set(title="validation IoU", xlabel="epoch", ylim=(0, 1))
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    png = assets / "training_curves.png"
    fig.savefig(png, dpi=90)
    plt.close(fig)
    last = hist[-1]
    cfg = metrics.get("config") or {}
    rows = [[_e(k), _fmt(v)] for k, v in (last.get("per_class_iou") or {}).items()]
    return (
        f"<p>model <b>{_e(cfg.get('model', '?'))}</b>, {len(hist)} epochs, best val mIoU "
        f"<b>{_fmt(metrics.get('best_val_miou'))}</b> (epoch {_e(metrics.get('best_epoch'))}).</p>"
        f'<img src="{png.relative_to(out)}" alt="training curves">'
        + _table(["class", "val IoU (last epoch)"], rows)
    )


def _quant_section(q: dict, assets: Path, out: Path) -> str:
    a, b = q.get("fp32", {}), q.get("quantized", {})
    names = list(a.get("per_class_iou", {}))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3))
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [a["per_class_iou"][n] or 0 for n in names], 0.4, label="FP32")
    ax.bar(
        [i + 0.2 for i in x],
        [b.get("per_class_iou", {}).get(n) or 0 for n in names],
        0.4,
        label=str(q.get("precision", "int8")).upper(),
    )
    ax.set_xticks(list(x), names)
    ax.set(ylim=(0, 1), title="per-class IoU on the validation split")
    ax.legend()
    fig.tight_layout()
    png = assets / "quant_iou.png"
    fig.savefig(png, dpi=90)
    plt.close(fig)
    rows = [
        [
            _e(n),
            _fmt(a["per_class_iou"][n]),
            _fmt(b.get("per_class_iou", {}).get(n)),
            _fmt((q.get("per_class_iou_delta_points") or {}).get(n), 2),
        ]
        for n in names
    ]
    rows.append(
        [
            "<b>mIoU</b>",
            _fmt(a.get("miou")),
            _fmt(b.get("miou")),
            _fmt(-float(q.get("miou_drop_points") or 0.0), 2),
        ]
    )
    status = "<span class=ok>passed</span>" if q.get("passed") else "<span class=ng>failed</span>"
    return (
        f"<p>{_e(str(q.get('precision', '')).upper())} (target {_e(q.get('target'))}, "
        f"{_e(q.get('calib_images'))} calibration images from the {_e(q.get('calib_source'))}"
        f", {_e(q.get('calib_method'))}): gate {status} with a drop of "
        f"{_fmt(q.get('miou_drop_points'), 2)} mIoU points "
        f"(max {_fmt(q.get('max_drop_points'), 2)})"
        f"; nodes kept in float: {_e(len(q.get('nodes_kept_float') or []))}. Latency on this "
        f"machine: FP32 {_fmt(a.get('latency_ms'), 1)} ms, quantized "
        f"{_fmt(b.get('latency_ms'), 1)} ms.</p>"
        f'<img src="{png.relative_to(out)}" alt="FP32 vs INT8 IoU">'
        + _table(["class", "FP32 IoU", "quantized IoU", "Δ points"], rows)
    )


def _loop_section(stats: dict, assets: Path, out: Path) -> str:
    """``stats``: the camera loop's final snapshot (``latency_ms`` per stage with p50/p99),
    optionally ``segmenter_ms`` (the Segmenter's own stages, same shape)."""
    stages = [
        (f"loop: {k}", v) for k, v in (stats.get("latency_ms") or {}).items() if isinstance(v, dict)
    ] + [
        (f"segmenter: {k}", v)
        for k, v in (stats.get("segmenter_ms") or {}).items()
        if isinstance(v, dict)
    ]
    head = ", ".join(
        f"{label} <b>{_fmt(stats[k], 2)}</b>"
        for k, label in (
            ("frames", "frames"),
            ("fps_mean", "mean FPS"),
            ("captured", "captured"),
            ("dropped", "dropped"),
            ("corrupt", "corrupt"),
            ("reconnects", "reconnects"),
        )
        if k in stats
    )
    body = f"<p>{head}</p>"
    if stages:
        plt = _plt()
        fig, ax = plt.subplots(figsize=(7, 0.4 * len(stages) + 1))
        ax.barh([n for n, _ in stages][::-1], [float(v.get("p50") or 0) for _, v in stages][::-1])
        ax.set(xlabel="p50 latency per frame (ms)", title="camera loop and segmenter stages")
        fig.tight_layout()
        png = assets / "loop_stages.png"
        fig.savefig(png, dpi=90)
        plt.close(fig)
        body += f'<img src="{png.relative_to(out)}" alt="stage latency">'
        body += _table(
            ["stage", "p50 ms", "p99 ms"],
            [[_e(n), _fmt(v.get("p50"), 2), _fmt(v.get("p99"), 2)] for n, v in stages],
        )
    sinks = stats.get("sinks") or {}
    if sinks:
        body += _table(
            ["sink", "written", "failed"],
            [[_e(k), _e(v.get("written")), _e(v.get("failed"))] for k, v in sinks.items()],
        )
    return body


def _verdict_section(records: Sequence[dict], limit: int) -> str:
    ng = [r for r in records if r.get("verdict") == "NG"]
    shown = ng[:limit] if ng else list(records[:limit])
    rows = []
    for r in shown:
        v = r.get("verdict")
        cls = "ng" if v == "NG" else "ok"
        rows.append(
            [
                _e(r.get("frame")),
                f"<span class={cls}>{_e(v)}</span>",
                _e("; ".join(r.get("reasons") or [])) or "–",
                _fmt(r.get("latency_ms"), 1),
            ]
        )
    n_ok = sum(r.get("verdict") == "OK" for r in records)
    return (
        f"<p>{len(records)} frames: <span class=ok>{n_ok} OK</span>, "
        f"<span class=ng>{len(ng)} NG</span>. "
        f"{'NG frames' if ng else 'First frames'} (up to {limit}):</p>"
        + _table(["frame", "verdict", "reasons", "latency ms"], rows)
    )


def write_report(
    out_dir,
    *,
    title: str = "edgeseg demo",
    summary: Sequence[str] = (),
    dataset_qa: Optional[dict] = None,
    training_metrics: Optional[dict] = None,
    quant_report: Optional[dict] = None,
    loop_stats: Optional[dict] = None,
    examples: Sequence[tuple[str, str]] = (),
    records: Sequence[dict] = (),
    artifacts: Sequence[tuple[str, str]] = (),
    notes: Sequence[str] = (),
    verdict_limit: int = 40,
) -> Path:
    """Writes ``out_dir/report.html`` (+ plots in ``out_dir/report_assets``). ``examples``
    and ``artifacts`` are ``(caption, path relative to out_dir)``."""
    out = Path(out_dir)
    assets = out / "report_assets"
    assets.mkdir(parents=True, exist_ok=True)
    parts = [f"<h1>{_e(title)}</h1>"]
    parts += [f"<p>{_e(s)}</p>" for s in summary]
    if notes:
        parts.append("<ul>" + "".join(f"<li class=note>{_e(n)}</li>" for n in notes) + "</ul>")
    if dataset_qa:
        q = dataset_qa
        labelled = sum(q["class_pixels"].values()) or 1
        rows = [
            [
                _e(c["name"]),
                _e(q["class_images"][c["name"]]),
                f"{100 * q['class_pixels'][c['name']] / labelled:.2f} %",
            ]
            for c in q["classes"]
        ]
        parts.append(
            "<h2>Dataset QA</h2>"
            f"<p>{_e(q['num_images'])} images ({_e(q['layout'])}), splits "
            f"{_e(', '.join(f'{k} {v}' for k, v in q['splits'].items()))}; "
            f"{len(q['errors'])} errors, {len(q['warnings'])} warnings.</p>"
            + _table(["class", "images", "share of labelled pixels"], rows)
            + "".join(
                f"<p class=note>{_e(w['kind'])}: {_e(w['detail'])}</p>" for w in q["warnings"][:10]
            )
        )
    if training_metrics:
        parts.append("<h2>Training</h2>" + _training_section(training_metrics, assets, out))
    if quant_report:
        parts.append("<h2>FP32 vs quantized</h2>" + _quant_section(quant_report, assets, out))
    if loop_stats:
        parts.append(
            "<h2>Camera loop: latency and FPS</h2>" + _loop_section(loop_stats, assets, out)
        )
    if examples:
        figs = "".join(
            f'<figure><img src="{_e(p)}" alt="{_e(c)}"><figcaption>{_e(c)}</figcaption></figure>'
            for c, p in examples
        )
        parts.append(f"<h2>Examples</h2><div class=grid>{figs}</div>")
    if records:
        parts.append("<h2>Verdict log</h2>" + _verdict_section(records, verdict_limit))
    if artifacts:
        parts.append(
            "<h2>Artifacts</h2><ul>"
            + "".join(f'<li><a href="{_e(p)}">{_e(p)}</a> — {_e(c)}</li>' for c, p in artifacts)
            + "</ul>"
        )
    page = (
        f"<!doctype html><html><head><meta charset=utf-8><title>{_e(title)}</title>"
        f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>\n"
    )
    path = out / "report.html"
    path.write_text(printable(page), encoding="utf-8")  # file names that are not UTF-8: \xNN
    missing = [link for link in report_links(path) if not (out / link).exists()]
    if missing:
        raise FileNotFoundError(f"{path}: links to missing files {missing}")
    return path


def report_links(path) -> list[str]:
    """Every relative ``src``/``href`` of a report page."""
    text = Path(path).read_text()
    links = re.findall(r'(?:src|href)="([^"]+)"', text)
    return [html.unescape(x) for x in links if "://" not in x and not x.startswith("#")]


def load_jsonl(path) -> list[dict]:
    """Records of a JSON-lines file (blank lines skipped)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
