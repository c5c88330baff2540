"""The accuracy suite's dataset builders (tiny sizes) and the boundary-F1 metric against an
independent computation (SciPy's Euclidean distance transform)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeseg.data import open_dataset, suite
from edgeseg.errors import DatasetError
from edgeseg.metrics import BoundaryF1

MISSING = [
    pkg
    for path, pkg in (
        (suite.PATTERN_DIR, "gimp-data"),
        (suite.PATTERN_DIR / "leaves3.pat", "gimp-data-extras"),
        (suite.STAMP_DIR, "tuxpaint-stamps-default"),
    )
    if not path.exists()
]
needs_packages = pytest.mark.skipif(
    bool(MISSING), reason=f"Debian package(s) {', '.join(MISSING)} not installed"
)


@needs_packages
@pytest.mark.parametrize("name", list(suite.DATASETS))
def test_builder_shapes_classes_and_disjoint_sources(tmp_path, name):
    out = suite.build(name, tmp_path, size=64, n_train=6, n_val=4, seed=3)
    ds = open_dataset(out)
    train, val = ds.split("train"), ds.split("val")
    assert (len(train), len(val)) == (6, 4)
    ids = {c.id for c in suite.dataset_classes(name)}
    assert [c.name for c in ds.classes] == [c.name for c in suite.dataset_classes(name)]
    seen = set()
    for i in range(len(ds)):
        img, mask = ds[i]
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        assert mask.shape == (64, 64)
        assert set(np.unique(mask).tolist()) <= ids
        assert img.std() > 2  # a photographed surface, not a flat fill
        seen |= set(np.unique(mask).tolist())
    assert len(seen) >= 2  # more than one class drawn over the ten images
    src = suite.sources(name)
    assert src["train"] and src["val"]
    assert not set(src["train"]) & set(src["val"])
    assert json.loads((out / "built.json").read_text())["sources"] == src


@needs_packages
def test_builder_is_seeded_and_cached(tmp_path):
    a = suite.build("cutouts", tmp_path / "a", size=64, n_train=2, n_val=1, seed=5)
    b = suite.build("cutouts", tmp_path / "b", size=64, n_train=2, n_val=1, seed=5)
    c = suite.build("cutouts", tmp_path / "c", size=64, n_train=2, n_val=1, seed=6)
    da, db, dc = open_dataset(a), open_dataset(b), open_dataset(c)
    assert all(np.array_equal(da[i][0], db[i][0]) for i in range(3))
    assert not np.array_equal(da[0][0], dc[0][0])
    stamp = (a / "built.json").stat().st_mtime_ns
    assert suite.build("cutouts", tmp_path / "a", size=64, n_train=2, n_val=1, seed=5) == a
    assert (a / "built.json").stat().st_mtime_ns == stamp  # reused, not rebuilt


@needs_packages
def test_cutout_kinds_of_val_never_in_train():
    kinds_train = {k for k in suite.sources("cutouts")["train"] if k.startswith("stamp:")}
    kinds_val = {k for k in suite.sources("cutouts")["val"] if k.startswith("stamp:")}
    assert kinds_val and kinds_train and not kinds_val & kinds_train
    # a stamp's kind is its folder: no file of a val kind is used for train
    val_files = {p for k, p in suite._stamp_list() if f"stamp:{k}" in kinds_val}
    train_files = {p for k, p in suite._stamp_list() if f"stamp:{k}" in kinds_train}
    assert val_files and train_files and not val_files & train_files


def test_zone_materials_each_hold_out_patterns():
    """Every zone material keeps patterns for train and holds a fair part out for val, so
    each class of the val split is scored on materials never trained on."""
    src = suite.sources("zones")
    for material, names in suite._ZONE_MATERIALS.items():
        val = [n for n in names if n in src["val"]]
        train = [n for n in names if n in src["train"]]
        assert train and val, material
        assert len(val) == max(1, round(0.3 * len(names))), (material, val)
        assert sorted(train + val) == sorted(names)


def test_missing_extras_pattern_names_its_package(tmp_path, monkeypatch):
    (tmp_path / "Plant").mkdir()
    monkeypatch.setattr(suite, "PATTERN_DIR", tmp_path)
    monkeypatch.setattr(suite, "_PAT", {})
    with pytest.raises(DatasetError, match=r"leaves3\.pat: pattern missing.*gimp-data-extras"):
        suite._pattern("leaves3")
    with pytest.raises(DatasetError, match=r"apt-get install gimp-data\)"):
        suite._pattern("Plant/leaves")


def test_missing_package_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(suite, "PATTERN_DIR", tmp_path / "nope")
    monkeypatch.setattr(suite, "_PAT", {})
    with pytest.raises(DatasetError, match="gimp-data"):
        suite.build("zones", tmp_path, size=32, n_train=1, n_val=1)
    with pytest.raises(DatasetError, match="unknown suite dataset 'x'.*cutouts"):
        suite.build("x", tmp_path)


def test_read_pattern_rejects_other_files(tmp_path):
    p = tmp_path / "a.pat"
    p.write_bytes(b"\0" * 40)
    with pytest.raises(DatasetError, match="a.pat: not a GIMP pattern"):
        suite.read_pattern(p)


def _boundary_reference(pred, target, c, tol):
    """Boundary F1 of class ``c`` from SciPy: a boundary pixel of a map is a pixel whose
    4-neighbourhood holds another label; matched when the other map's boundary lies within
    ``tol`` px (Euclidean)."""
    from scipy import ndimage

    def bnd(lab):
        b = np.zeros(lab.shape, bool)
        dv = lab[1:, :] != lab[:-1, :]
        dh = lab[:, 1:] != lab[:, :-1]
        b[1:, :] |= dv
        b[:-1, :] |= dv
        b[:, 1:] |= dh
        b[:, :-1] |= dh
        return b & (lab == c)

    pb, tb = bnd(pred), bnd(target)
    if not pb.any() and not tb.any():
        return None
    if not pb.any() or not tb.any():
        return 0.0
    dt_t = ndimage.distance_transform_edt(~tb)
    dt_p = ndimage.distance_transform_edt(~pb)
    precision = (dt_t[pb] <= tol).mean()
    recall = (dt_p[tb] <= tol).mean()
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


@pytest.mark.parametrize("seed", range(6))
def test_boundary_f1_matches_distance_transform(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(8, 60, 2)
    k = int(rng.integers(2, 5))
    tol = int(rng.integers(0, 4))
    # blocky label maps (upsampled noise) so boundaries are lines, not salt and pepper
    target = np.kron(rng.integers(0, k, (h // 4 + 1, w // 4 + 1)), np.ones((4, 4), int))[:h, :w]
    pred = target.copy()
    flip = rng.random((h, w)) < 0.08
    pred[flip] = rng.integers(0, k, int(flip.sum()))
    bf = BoundaryF1(k, tolerance=tol).update(pred.astype(np.uint8), target.astype(np.uint8))
    for c in range(k):
        ref = _boundary_reference(pred, target, c, tol)
        got = bf.f1()[c]
        if ref is None:
            assert np.isnan(got)
        else:
            assert got == pytest.approx(ref, abs=1e-9)
