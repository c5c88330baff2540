"""edgeseg.metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeseg.metrics import BoundaryF1, ConfusionMatrix, boundary_mask, confusion_matrix, summarize

# target / prediction, 3 classes, one void pixel (255)
T = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 255]])
P = np.array([[0, 1, 1, 1], [0, 0, 1, 2], [2, 2, 0, 0]])


def test_confusion_matrix_by_hand():
    cm = confusion_matrix(P, T, 3)
    # rows truth, columns prediction; the void pixel (pred 0) is skipped
    assert cm.tolist() == [[3, 1, 0], [0, 3, 1], [1, 0, 2]]


def test_iou_dice_accuracy_by_hand():
    cm = ConfusionMatrix(3).update(P, T)
    # class 0: tp 3, fp 1, fn 1 -> 3/5; class 1: tp 3, fp 1, fn 1 -> 3/5; class 2: tp 2, fp 1, fn 1
    assert cm.iou() == pytest.approx([3 / 5, 3 / 5, 2 / 4])
    assert cm.miou() == pytest.approx((0.6 + 0.6 + 0.5) / 3)
    assert cm.dice() == pytest.approx([6 / 8, 6 / 8, 4 / 6])
    assert cm.pixel_accuracy() == pytest.approx(8 / 11)
    assert cm.class_pixels().tolist() == [4, 4, 3]


def test_absent_class_is_nan_and_skipped():
    cm = ConfusionMatrix(4).update(P, T)
    assert math.isnan(cm.iou()[3])
    assert cm.miou() == pytest.approx((0.6 + 0.6 + 0.5) / 3)
    report = summarize(cm, ["bg", "a", "b", "c"], num_images=1)
    assert report["per_class_iou"]["c"] is None
    assert report["num_images"] == 1


def test_accumulates_over_images_and_batches():
    cm = ConfusionMatrix(3)
    cm.update(P, T).update(np.stack([P, P]), np.stack([T, T]))
    assert cm.matrix.sum() == 33
    assert cm.miou() == pytest.approx((0.6 + 0.6 + 0.5) / 3)


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(P[:2], T, 3)
    with pytest.raises(ValueError, match="class index 5"):
        confusion_matrix(np.full_like(P, 5), T, 3)


def test_boundary_mask_by_hand():
    lab = np.array([[0, 0, 1], [0, 0, 1], [0, 0, 1]])
    b = boundary_mask(lab)
    assert b.astype(int).tolist() == [[0, 1, 1], [0, 1, 1], [0, 1, 1]]
    # a void neighbour makes no boundary
    valid = np.ones_like(lab, bool)
    valid[:, 2] = False
    assert not boundary_mask(lab, valid).any()


def test_boundary_f1_exact_and_shifted():
    t = np.zeros((20, 20), int)
    t[:, 10:] = 1  # vertical edge between columns 9 and 10
    bf = BoundaryF1(2, tolerance=0).update(t, t)
    assert bf.f1() == pytest.approx([1.0, 1.0])
    p = np.zeros_like(t)
    p[:, 12:] = 1  # the edge 2 px to the right
    # tolerance 0: no predicted boundary pixel lies on a true one
    assert BoundaryF1(2, tolerance=0).update(p, t).f1() == pytest.approx([0.0, 0.0])
    # tolerance 1: class 0 edge at col 11 vs 9 is 2 px away; class 1 at 12 vs 10 -> 2 px away
    assert BoundaryF1(2, tolerance=1).update(p, t).f1() == pytest.approx([0.0, 0.0])
    assert BoundaryF1(2, tolerance=2).update(p, t).mean_f1() == pytest.approx(1.0)


def test_boundary_f1_precision_recall_counts():
    t = np.zeros((10, 10), int)
    t[4, :] = 1  # a 1-px scratch: 10 boundary pixels of class 1, 20 of class 0
    p = np.zeros_like(t)
    p[4, :5] = 1  # half of it found
    bf = BoundaryF1(2, tolerance=0).update(p, t)
    assert bf.precision()[1] == pytest.approx(1.0)
    assert bf.recall()[1] == pytest.approx(0.5)
    assert bf.f1()[1] == pytest.approx(2 * 0.5 / 1.5)
    # missing the scratch entirely: F1 0 for it, nan for a class never seen
    bf3 = BoundaryF1(3, tolerance=1).update(np.zeros_like(t), t)
    f = bf3.f1()
    assert f[1] == 0.0 and f[0] == 0.0 and math.isnan(f[2])


def test_boundary_f1_ignores_void():
    t = np.zeros((8, 8), int)
    t[:, 4:] = 255
    p = np.zeros_like(t)
    p[:, 4:] = 1  # the prediction's edge lies on void: not counted
    bf = BoundaryF1(2, tolerance=1).update(p, t)
    assert bf.counts.sum() == 0
    assert math.isnan(bf.mean_f1())
