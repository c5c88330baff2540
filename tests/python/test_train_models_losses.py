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
    nn.PixelShuffle,
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


@pytest.mark.parametrize(
    ("kw", "full_res"),
    [
        ({"up": "bilinear"}, []),
        ({"up": "nearest"}, []),
        ({"stem": "pool"}, ["stem.0"]),
        ({"stem": "pool", "fine": True}, ["fine", "stem.0"]),
    ],
)
def test_unet_without_full_resolution_convs(kw, full_res, tmp_path):
    """full_res_convs=0: full-resolution N×C×H×W logits, yet no convolution of the encoder or
    decoder runs at full resolution (only the pool stem's 3->16 conv and the fine 1x1), every
    one but the 4-class ones has >= 16 output channels (int8's fast path), and the ONNX graph
    has only export-clean operators, DepthToSpace among them."""
    onnx = pytest.importorskip("onnx")
    up = kw.get("up", "bilinear")
    torch.manual_seed(0)
    model = create_model("unet", 4, width=0.25, max_channels=96, full_res_convs=0, **kw)
    model.eval()
    seen = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(
                lambda mod, i, o, name=name: seen.__setitem__(name, (mod, tuple(o.shape[-2:])))
            )
    with torch.no_grad():
        y = model(torch.randn(2, 3, 64, 96))
    assert y.shape == (2, 4, 64, 96)
    assert sorted(n for n, (_, hw) in seen.items() if hw == (64, 96)) == full_res
    assert all(hw[0] <= 32 and hw[1] <= 48 for n, (_, hw) in seen.items() if n not in full_res)
    assert all(m.out_channels >= 16 for n, (m, _) in seen.items() if n != "fine")
    assert model.head.out_channels == 16  # 4 sub-pixels x 4 classes
    for m in model.modules():
        if type(m).__module__.startswith("torch"):
            assert isinstance(m, EXPORT_CLEAN), f"{type(m).__name__} is not export-clean"
    path = tmp_path / "m.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, 64, 96),),
        str(path),
        opset_version=17,
        dynamo=False,
        do_constant_folding=True,
        training=torch.onnx.TrainingMode.EVAL,
    )
    nodes = onnx.load(str(path)).graph.node
    ops = {n.op_type for n in nodes}
    assert "DepthToSpace" in ops
    modes = {
        a.s.decode()
        for n in nodes
        if n.op_type == "Resize"
        for a in n.attribute
        if a.name == "mode"
    }
    assert modes == {"linear" if up == "bilinear" else "nearest"}
    clean = {"Conv", "BatchNormalization", "Relu", "Resize", "Concat", "MaxPool", "DepthToSpace"}
    clean |= {"Add"} if kw.get("fine") else set()
    # the TorchScript exporter's shape arithmetic for Resize's target size and constants
    shape_ops = {"Shape", "Slice", "Gather", "Concat", "Constant", "Cast", "Unsqueeze", "Identity"}
    assert ops <= clean | shape_ops, ops - clean - shape_ops


def test_unet_without_full_resolution_convs_learns_1px_lines():
    """The space-to-depth stem and DepthToSpace head keep single-pixel detail: a 1 px line at
    an odd column (half of a 2x2 cell) is learned exactly, and the loss falls."""
    torch.manual_seed(0)
    model = create_model("unet", 2, width=0.25, depth=3, full_res_convs=0, dropout=0.0)
    x = torch.randn(4, 3, 32, 32) * 0.1
    target = torch.zeros(4, 32, 32, dtype=torch.long)
    for i, col in enumerate([5, 13, 20, 27]):
        x[i, :, :, col] += 1.0
        target[i, :, col] = 1
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = create_loss("ce")
    losses = []
    for _ in range(150):
        opt.zero_grad()
        loss = loss_fn(model(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    model.train(False)
    with torch.no_grad():
        pred = model(x).argmax(1)
    line = target == 1
    iou = (pred[line] == 1).sum() / ((pred == 1) | line).sum()
    assert iou.item() > 0.9


def test_unet_bad_options():
    with pytest.raises(TrainingError, match="full_res_convs"):
        create_model("unet", 3, full_res_convs=3)
    with pytest.raises(TrainingError, match="up"):
        create_model("unet", 3, up="bicubic")
    with pytest.raises(TrainingError, match="stem"):
        create_model("unet", 3, full_res_convs=0, stem="conv")
    with pytest.raises(TrainingError, match="fine"):
        create_model("unet", 3, full_res_convs=0, fine=True)


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
