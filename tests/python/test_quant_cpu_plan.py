"""edgeseg.quant.cpu_plan: which convolutions ONNX Runtime runs fast in int8 on a CPU, and which
data-movement nodes follow them (pure graph logic, no calibration)."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgeseg.quant.cpu_plan import conv_int8_fast, detect_cpu_isa, float_for_speed  # noqa: E402


@pytest.mark.parametrize(
    ("cin", "cout", "group", "fast"),
    [
        (16, 16, 1, True),
        (8, 16, 1, True),
        (192, 64, 1, True),
        (4, 24, 1, True),
        (8, 8, 1, False),  # < 16 output channels
        (24, 8, 1, False),
        (16, 4, 1, False),
        (16, 20, 1, False),  # not a multiple of 8
        (3, 16, 1, False),  # input channels not a multiple of 4
        (1, 32, 32, True),  # depthwise, multiple of 16
        (1, 24, 24, False),  # depthwise, not a multiple of 16
        (4, 32, 8, False),  # grouped
    ],
)
def test_conv_int8_fast(cin, cout, group, fast):
    ok, why = conv_int8_fast(cin, cout, group)
    assert ok is fast
    assert isinstance(why, str) and why


def _unet_like() -> onnx.ModelProto:
    """images -> a(3->8) -> relu -> pool -> b(8->16) -> relu -> c(16->16) -> relu -> resize
    -> concat(with a's relu) -> d(24->8) -> relu -> head(8->2): a miniature of the UNet."""
    rng = np.random.default_rng(0)
    inits, nodes = [], []

    def conv(name, x, cin, cout, k=3, relu=True):
        w = rng.standard_normal((cout, cin, k, k)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"{name}.w"))
        nodes.append(
            helper.make_node("Conv", [x, f"{name}.w"], [f"{name}.y"], name=name, pads=[k // 2] * 4)
        )
        if not relu:
            return f"{name}.y"
        nodes.append(helper.make_node("Relu", [f"{name}.y"], [f"{name}.r"], name=f"{name}_relu"))
        return f"{name}.r"

    a = conv("a", "images", 3, 8)
    nodes.append(
        helper.make_node("MaxPool", [a], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2])
    )
    b = conv("b", "p", 8, 16)
    c = conv("c", b, 16, 16)
    inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"))
    nodes.append(
        helper.make_node("Resize", [c, "", "scales"], ["up"], name="resize", mode="linear")
    )
    nodes.append(helper.make_node("Concat", ["up", a], ["cat"], name="concat", axis=1))
    d = conv("d", "cat", 24, 8)
    conv("head", d, 8, 2, k=1, relu=False)
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("head.y", TensorProto.FLOAT, [1, 2, 32, 32])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_float_for_speed_unet_like():
    plan = float_for_speed(_unet_like(), cpu_isa="no-vnni")
    # 8- and 2-channel convolutions and their activations stay float; so do the nodes that
    # do not sit between two int8 convolutions (pool after a float conv, resize/concat before
    # one); b and c (16 channels) are int8 and nothing between them is listed
    assert set(plan) == {"a", "a_relu", "pool", "resize", "concat", "d", "d_relu", "head"}
    assert "output channels" in plan["a"] and "output channels" in plan["head"]
    assert "between two int8" in plan["concat"]


@pytest.mark.parametrize(
    ("cin", "cout", "group", "fast"),
    [(3, 16, 1, True), (16, 4, 1, True), (24, 8, 1, True), (1, 24, 24, False), (4, 32, 8, False)],
)
def test_conv_int8_fast_with_vnni(cin, cout, group, fast):
    """With VNNI every dense convolution gains in int8; grouped ones keep the old rule."""
    assert conv_int8_fast(cin, cout, group, "vnni")[0] is fast


def test_float_for_speed_with_vnni_quantizes_every_conv():
    plan = float_for_speed(_unet_like(), cpu_isa="vnni")
    # every convolution int8: only the float output's neighbourhood... nothing stays float
    assert plan == {}
    with pytest.raises(ValueError, match="cpu_isa 'avx9'"):
        float_for_speed(_unet_like(), cpu_isa="avx9")


def test_detect_cpu_isa_reads_the_flags():
    sapphire = "processor : 0\nflags : fpu sse avx2 avx512f avx512_vnni amx_int8\n"
    alder = "flags\t\t: fpu avx2 avx_vnni\n"
    zen2 = "flags : fpu sse avx2 fma\n"
    assert detect_cpu_isa(sapphire) == detect_cpu_isa(alder) == "vnni"
    assert detect_cpu_isa(zen2) == detect_cpu_isa("") == "no-vnni"
    assert detect_cpu_isa() in ("vnni", "no-vnni")
    # the shared /proc/cpuinfo reader behind it (and the benchmarks' CPU names)
    from edgeseg._platform import cpuinfo_field

    text = "processor\t: 0\nmodel name\t: Xeon: Gold\nflags\t\t: fpu avx2\n"
    assert cpuinfo_field("model name", text) == "Xeon: Gold"
    assert cpuinfo_field("flags", text) == "fpu avx2" and cpuinfo_field("bogus", text) is None


def test_float_for_speed_follows_keep_float():
    """A conv kept float for accuracy pulls the data movement around it out of int8 too."""
    plan = float_for_speed(_unet_like(), keep_float=["c"], cpu_isa="no-vnni")
    assert "c" not in plan  # the caller's choice, not a speed decision
    assert {"resize", "concat"} <= set(plan)


def _pixel_shuffle_net(mid: bool) -> onnx.ModelProto:
    """images -> s(3->16, 2x2 stride 2) -> relu -> a(16->16) -> relu -> head(16->16, 1x1) ->
    DepthToSpace(2) -> output; ``mid``: head(16->64) -> DepthToSpace -> b(16->16) -> output."""
    rng = np.random.default_rng(0)
    inits, nodes = [], []

    def conv(name, x, cin, cout, k=3, stride=1, relu=True):
        w = rng.standard_normal((cout, cin, k, k)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"{name}.w"))
        pads = [0] * 4 if stride > 1 else [k // 2] * 4
        nodes.append(
            helper.make_node(
                "Conv", [x, f"{name}.w"], [f"{name}.y"], name=name, pads=pads, strides=[stride] * 2
            )
        )
        if not relu:
            return f"{name}.y"
        nodes.append(helper.make_node("Relu", [f"{name}.y"], [f"{name}.r"], name=f"{name}_relu"))
        return f"{name}.r"

    s = conv("s", "images", 3, 16, k=2, stride=2)
    a = conv("a", s, 16, 16)
    h = conv("head", a, 16, 64 if mid else 16, k=1, relu=False)
    nodes.append(helper.make_node("DepthToSpace", [h], ["d2s"], name="d2s", blocksize=2))
    out, c = "d2s", 4
    if mid:
        out, c = conv("b", "d2s", 16, 16, relu=False), 16
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, c, 32, 32])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_float_for_speed_depth_to_space():
    """The UNet without full-resolution convolutions: its 3-channel stride-2 stem stays float,
    the half-resolution convolutions and the 16-channel head are int8, and the DepthToSpace
    that feeds the (float) graph output stays float; between two int8 convolutions it is
    plain data movement and is not listed."""
    plan = float_for_speed(_pixel_shuffle_net(mid=False), cpu_isa="no-vnni")
    assert set(plan) == {"s", "s_relu", "d2s"}
    assert "input channels" in plan["s"]
    assert "between two int8" in plan["d2s"]
    assert set(float_for_speed(_pixel_shuffle_net(mid=True), cpu_isa="no-vnni")) == {"s", "s_relu"}
