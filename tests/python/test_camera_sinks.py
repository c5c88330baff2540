"""File sinks on their own: JSON lines to stdout, pictures of each kind, option errors."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
from camera_helpers import WarmSegmenter  # noqa: E402
from PIL import Image  # noqa: E402

from edgeseg.camera import open_source  # noqa: E402
from edgeseg.errors import SinkError  # noqa: E402
from edgeseg.rules.verdict import Verdict  # noqa: E402
from edgeseg.sinks import LoopItem, make_record, open_sink  # noqa: E402


def _items(n=3, verdicts=None):
    src = open_source(f"synthetic://?size=64x48&frames={n}&seed=4")
    seg = WarmSegmenter()
    out = []
    with src:
        for i in range(n):
            f = src.read()
            r = seg.predict(f.image)
            v = None if verdicts is None else verdicts[i]
            out.append(LoopItem(f, r, v, make_record(f, r, v, time.time())))
    return out


def test_jsonl_to_stdout(capsys):
    sink = open_sink("jsonl:-")
    sink.open()
    for it in _items(2):
        sink.write(it)
    sink.close()
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(x)["frame"] for x in lines] == [0, 1]


def test_jsonl_append_keeps_earlier_lines(tmp_path):
    path = tmp_path / "a.jsonl"
    for spec in (f"jsonl:{path}", f"jsonl:{path}?append=1"):
        sink = open_sink(spec)
        sink.open()
        for it in _items(2):
            sink.write(it)
        sink.close()
    assert len(path.read_text().splitlines()) == 4


def test_images_of_every_kind_and_only_ng(tmp_path):
    items = _items(3, [Verdict(True), Verdict(False, ["product: too big"]), Verdict(True)])
    sink = open_sink(f"images:{tmp_path}?what=overlay,mask,confidence,frame&only=ng&ext=png")
    sink.open()
    for it in items:
        sink.write(it)
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "00000001_confidence.png",
        "00000001_frame.png",
        "00000001_mask.png",
        "00000001_overlay.png",
    ]
    it = items[1]
    assert np.array_equal(cv2.imread(str(tmp_path / "00000001_frame.png")), it.frame.image)
    mask = np.asarray(Image.open(tmp_path / "00000001_mask.png"))
    assert np.array_equal(mask, it.result.class_map)  # palette PNG of class indices
    conf = cv2.imread(str(tmp_path / "00000001_confidence.png"), cv2.IMREAD_UNCHANGED)
    assert conf.shape == (48, 64) and conf.min() >= 127  # WarmSegmenter's confidence >= 0.5
    overlay = cv2.imread(str(tmp_path / "00000001_overlay.png"))
    bg = it.result.class_map == 0
    assert np.array_equal(overlay[bg], it.frame.image[bg])  # background stays transparent
    assert not np.array_equal(overlay[~bg], it.frame.image[~bg])
    assert sink.stats() == {"files": 4, "skipped": 2}


def test_video_of_masks(tmp_path):
    path = tmp_path / "m.avi"
    sink = open_sink(f"video:{path}?what=mask&fps=5")
    sink.open()
    items = _items(4)
    for it in items:
        sink.write(it)
    sink.close()
    cap = cv2.VideoCapture(str(path))
    ok, first = cap.read()
    n = 1 + sum(1 for _ in iter(lambda: cap.read()[0], False))
    cap.release()
    assert ok and n == 4 and first.shape == (48, 64, 3)
    product = items[0].result.class_map == 1
    # MJPEG is lossy: the product pixels are green (0, 200, 0), the rest black
    assert first[product][:, 1].mean() > 150 and first[~product].mean() < 40


@pytest.mark.parametrize(
    "spec, msg",
    [
        ("images:out?evry=3", "unknown option.*'evry'"),
        ("images:out?what=heat", "what=\\['heat'\\]"),
        ("images:out?only=ok", "only=ng"),
        ("video:out.mp4?what=x", "what='x'"),
        ("video:", "needs a file name"),
        ("jsonl:x.jsonl?rotate=1", "unknown option"),
    ],
)
def test_bad_sink_options_name_the_valid_ones(spec, msg):
    with pytest.raises(SinkError, match=msg):
        open_sink(spec)


def test_unwritable_targets_fail_at_open(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for spec in (f"images:{blocker}/sub", f"jsonl:{blocker}/sub/a.jsonl"):
        with pytest.raises(SinkError, match="cannot"):
            open_sink(spec).open()
