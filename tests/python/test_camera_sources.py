"""Frame sources: synthetic scene, image folders/globs, video files, streams that never open,
GStreamer detection."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from camera_helpers import FFMPEG, free_port  # noqa: E402

from edgeseg.camera import FrameDropped, open_source  # noqa: E402
from edgeseg.camera.capture import CaptureSource, gstreamer_available  # noqa: E402
from edgeseg.camera.images import ImageFolderSource  # noqa: E402
from edgeseg.camera.synthetic import SyntheticSource  # noqa: E402
from edgeseg.errors import EdgesegError, SourceError  # noqa: E402


def _read_all(src, limit=1000):
    frames, dropped = [], []
    with src:
        for _ in range(limit):
            try:
                f = src.read(1.0)
            except FrameDropped as e:
                dropped.append(e)
                continue
            if f is None:
                break
            frames.append(f)
    return frames, dropped


def test_synthetic_scene_ground_truth_is_what_was_drawn():
    src = open_source("synthetic://?width=96&height=64&frames=6&objects=2&seed=3")
    assert isinstance(src, SyntheticSource) and not src.live
    frames, _ = _read_all(src)
    assert [f.index for f in frames] == list(range(6))
    fg, bg = src._fg[0], src._bg[0]
    for f in frames:
        gt = f.meta["ground_truth"]
        assert f.image.shape == (64, 96, 3) and gt.shape == (64, 96) and gt.dtype == np.uint8
        assert 0 < int((gt == 1).sum()) < gt.size
        assert f.meta["classes"] == ["background", "product"]
        k = f.index % 4
        fg, bg = src._fg[k], src._bg[k]
        assert np.array_equal(f.image[gt == 1], fg[gt == 1])
        assert np.array_equal(f.image[gt == 0], bg[gt == 0])
    # the objects move
    assert not np.array_equal(frames[0].meta["ground_truth"], frames[5].meta["ground_truth"])
    # same seed, same scene
    again, _ = _read_all(open_source("synthetic://?width=96&height=64&frames=6&objects=2&seed=3"))
    assert all(np.array_equal(a.image, b.image) for a, b in zip(frames, again))


def test_synthetic_bad_options_name_the_valid_ones():
    with pytest.raises(SourceError, match="unknown option.*'colour'.*valid"):
        open_source("synthetic://?colour=red")
    with pytest.raises(SourceError, match="bad option value"):
        open_source("synthetic://?width=wide")
    assert open_source("synthetic://?fps=30").live


def _write_images(d, sizes):
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (w, h) in enumerate(sizes):
        img = np.full((h, w, 3), 10 * i, np.uint8)
        p = d / f"img_{i:02d}.png"
        cv2.imwrite(str(p), img)
        paths.append(p)
    return paths


def test_image_folder_sorted_with_corrupt_file_and_size_change(tmp_path):
    d = tmp_path / "shots"
    _write_images(d, [(32, 24), (32, 24), (48, 40), (32, 24)])
    (d / "img_01b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"broken" * 10)  # corrupt
    (d / "notes.txt").write_text("not an image")
    src = open_source(str(d))
    assert isinstance(src, ImageFolderSource)
    frames, dropped = _read_all(src)
    names = [os.path.basename(f.meta["path"]) for f in frames]
    assert names == ["img_00.png", "img_01.png", "img_02.png", "img_03.png"]
    assert [f.image[0, 0, 0] for f in frames] == [0, 10, 20, 30]
    assert len(dropped) == 1 and "img_01b.png" in str(dropped[0])
    st = src.stats()
    assert st["corrupt"] == 1 and st["frames"] == 4 and st["size_changes"] == 2


def test_image_glob_and_loop(tmp_path):
    _write_images(tmp_path, [(16, 16)] * 3)
    src = open_source(str(tmp_path / "img_0[02].png"), loop=True)
    with src:
        got = [os.path.basename(src.read().meta["path"]) for _ in range(5)]
    assert got == ["img_00.png", "img_02.png", "img_00.png", "img_02.png", "img_00.png"]


def test_empty_or_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="no images found"):
        open_source(str(tmp_path)).open()
    with pytest.raises(SourceError, match="no images found"):
        open_source(str(tmp_path / "nothing" / "*.png")).open()
    with pytest.raises(SourceError, match="no such folder"):
        open_source(str(tmp_path / "gone.png")).open()


def test_missing_video_file_names_it(tmp_path):
    missing = tmp_path / "line.mp4"
    with pytest.raises(SourceError, match="line.mp4.*no such video file"):
        open_source(str(missing))


def _ffmpeg_video(path, n=12, size="64x48"):
    src = f"testsrc2=size={size}:rate=10"
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", src,
           "-frames:v", str(n), "-pix_fmt", "yuv420p", str(path)]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=60)


def test_video_file_all_frames_then_end_and_loop(tmp_path):
    path = tmp_path / "clip.mp4"
    _ffmpeg_video(path, n=12)
    src = open_source(str(path))
    assert isinstance(src, CaptureSource) and not src.live
    frames, dropped = _read_all(src)
    assert len(frames) == 12 and not dropped
    assert frames[0].image.shape == (48, 64, 3)
    assert [f.index for f in frames] == list(range(12))
    assert all(frames[i].t_capture <= frames[i + 1].t_capture for i in range(11))
    src = open_source(str(path), loop=True)
    with src:
        n = sum(src.read() is not None for _ in range(30))
    assert n == 30


def test_file_that_is_no_video_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.mkv"
    bad.write_text("hello")
    with pytest.raises(SourceError, match="notes.mkv.*cannot be opened.*ffprobe"):
        open_source(str(bad)).open()


def test_stream_that_never_opens_names_it_and_the_fix():
    url = f"tcp://127.0.0.1:{free_port()}"
    src = open_source(url, open_timeout=0.3, backoff=(0.1, 0.1))
    with pytest.raises(SourceError) as e:
        src.open()
    msg = str(e.value)
    assert url in msg and "tried for 0.3 s" in msg and "ffprobe" in msg
    assert isinstance(e.value, EdgesegError)


def test_camera_index_without_camera(monkeypatch):
    # /dev/video97 does not exist on a test machine; the message says what to check
    src = open_source("/dev/video97", open_timeout=0)
    assert src.kind == "v4l2" and src.live
    with pytest.raises(SourceError, match="/dev/video97.*plugged in.*'video' group"):
        src.open()


@pytest.mark.skipif(gstreamer_available(), reason="this OpenCV has GStreamer")
@pytest.mark.parametrize(
    "uri", ["csi://0", "gst:videotestsrc ! videoconvert ! video/x-raw,format=BGR ! appsink"]
)
def test_gstreamer_sources_say_plainly_when_opencv_lacks_it(uri):
    src = open_source(uri)
    with pytest.raises(SourceError, match="needs an OpenCV built with GStreamer.*GStreamer: NO"):
        src.open()


def test_csi_pipeline_and_bad_gst_spec():
    src = open_source("csi://1?width=1280&height=720&fps=60")
    assert "nvarguscamerasrc sensor-id=1" in src._target
    assert "width=1280,height=720,framerate=60/1" in src._target
    with pytest.raises(SourceError, match="must end in an appsink"):
        open_source("gst:videotestsrc ! fakesink")
    with pytest.raises(SourceError, match="csi://N"):
        open_source("csi://front")


def _ts(path, size, n):
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
           f"testsrc2=size={size}:rate=10", "-frames:v", str(n), "-c:v", "mpeg2video",
           "-f", "mpegts", str(path)]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=60)
    return path.read_bytes()


def test_stream_that_changes_size_or_carries_garbage_keeps_delivering(tmp_path):
    # an MPEG-TS whose resolution changes mid-stream (two encodes back to back)
    mixed = tmp_path / "mixed.ts"
    mixed.write_bytes(_ts(tmp_path / "a.ts", "64x48", 10) + _ts(tmp_path / "b.ts", "96x64", 10))
    frames, _ = _read_all(open_source(str(mixed)))
    assert len(frames) >= 15  # both parts decode (OpenCV scales the second to the first size)
    assert {f.image.shape for f in frames} <= {(48, 64, 3), (64, 96, 3)}
    # 2 KB of garbage in the middle of a stream: frames around it still come, no crash
    data = bytearray(_ts(tmp_path / "c.ts", "64x48", 30))
    mid = len(data) // 2
    data[mid : mid + 2048] = np.random.default_rng(0).integers(0, 256, 2048, np.uint8).tobytes()
    broken = tmp_path / "broken.ts"
    broken.write_bytes(bytes(data))
    frames, _ = _read_all(open_source(str(broken)))
    assert 20 <= len(frames) <= 30


def test_synthetic_loop_repeats_the_scene_and_keeps_counting():
    src = open_source("synthetic://?size=32x32&frames=3", loop=True)
    with src:
        frames = [src.read() for _ in range(7)]
    assert [f.index for f in frames] == list(range(7))
    assert np.array_equal(frames[0].image, frames[3].image)
    assert np.array_equal(frames[1].meta["ground_truth"], frames[4].meta["ground_truth"])
    assert not np.array_equal(frames[0].image, frames[1].image)
