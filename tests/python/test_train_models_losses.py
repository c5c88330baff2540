"""Models (shapes, export-clean operators, registry errors) and losses (hand-computed)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from edgeseg import TrainingError  # noqa: E402
from edgeseg.train import MODELS, class_weights, create_loss, create_model  # noqa: E402
from edgeseg.train.losses import DiceLoss  # noqa: E402

# what ONNX export and TensorRT take as they are
EXPORT_CLEAN = (
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.Hardswish,
    nn.Sigmoid,
    nn.MaxPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Dropout2d,
    nn.Identity,
    nn.Sequential,
    nn.ModuleList,
)


#: the plain-torch models; timm_unet (optional timm encoder, no width argument) is checked on
#: its exported graph in test_train_zoo.py
BUILTIN = sorted(set(MODELS) - {"timm_unet"})


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("hw", [(64, 64), (48, 80)])
def test_model_output_shape_and_ops(name, hw):
    torch.manual_seed(0)
    model = create_model(name, 5, width=0.25).eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, *hw))
    assert y.shape == (2, 5, *hw)
    assert torch.isfinite(y).all()
    for m in model.modules():
        if type(m).__module__.startswith("torch"):
            assert isinstance(m, EXPORT_CLEAN), f"{name}: {type(m).__name__} is not export-clean"


def test_unknown_model_lists_the_valid_ones():
    with pytest.raises(TrainingError, match="available models: mbv3_lraspp, timm_unet, unet"):
        create_model("deeplab", 3)
    with pytest.raises(TrainingError, match="bad argument"):
        create_model("unet", 3, colour=True)


def test_ce_matches_hand_value_with_ignore_and_weights():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])  # N=1, C=2, H=1, W=2
    target = torch.tensor([[[0, 255]]])
    # only pixel 0 counts: -log softmax([2, 0])[0]
    expected = -F.log_softmax(torch.tensor([2.0, 0.0]), 0)[0].item()
    assert create_loss("ce")(logits, target).item() == pytest.approx(expected, rel=1e-6)
    target2 = torch.tensor([[[0, 1]]])
    w = [1.0, 3.0]
    l0 = -F.log_softmax(torch.tensor([2.0, 0.0]), 0)[0].item()
    l1 = -F.log_softmax(torch.tensor([0.0, 1.0]), 0)[1].item()
    got = create_loss("ce", w)(logits, target2).item()
    assert got == pytest.approx((1 * l0 + 3 * l1) / 4, rel=1e-6)


def test_dice_perfect_and_wrong():
    target = torch.tensor([[[0, 1], [1, 255]]])
    perfect = F.one_hot(torch.tensor([[[0, 1], [1, 0]]]), 2).permute(0, 3, 1, 2).float() * 50
    assert DiceLoss(smooth=0)(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    wrong = -perfect
    assert DiceLoss(smooth=0)(wrong, target).item() == pytest.approx(1.0, abs=1e-6)
    both = create_loss("ce+dice")(perfect, target).item()
    assert both == pytest.approx(0.0, abs=1e-4)


def test_class_weights_by_hand():
    counts = [900, 90, 10]
    f = np.array(counts) / 1000
    w = class_weights(counts, "invsqrt", max_weight=100)
    raw = 1 / np.sqrt(f)
    assert w == pytest.approx(raw / (raw * f).sum())
    assert (w * f).sum() == pytest.approx(1.0)
    m = class_weights(counts, "median", max_weight=100)
    raw = np.median(f) / f
    assert m == pytest.approx(raw / (raw * f).sum())
    clipped = class_weights(counts, "median", max_weight=2)
    assert clipped[2] / clipped[0] == pytest.approx(2.0)
    # a class with no pixels gets the largest weight
    z = class_weights([900, 100, 0], "invsqrt")
    assert z[2] == z.max()
    with pytest.raises(TrainingError, match="every mask is void"):
        class_weights([0, 0], "invsqrt")
    with pytest.raises(TrainingError, match="unknown loss"):
        create_loss("focal")
