"""Which nodes of a float model should run int8 on ONNX Runtime's CPU kernels (``--target cpu``).

Quantizing every convolution is not what makes a model fast on a CPU. ONNX Runtime (MLAS)
runs an int8 ``QLinearConv`` on one of two paths:

* the **symmetric indirect convolution** (``MlasConvSym``): int8 weights with zero point 0,
  the input gathered through an indirection buffer, requantization fused into the kernel. On
  x86 (AVX2, AVX-VNNI, AVX-512) MLAS takes it only for a dense convolution with at least 16
  output channels, output channels a multiple of 8 and input channels a multiple of 4, or a
  depthwise one with a multiple of 16 channels.
* otherwise the **generic path**: an im2col copy of the input into a buffer that is allocated
  and zeroed on one thread every run (kernel height x width x input channels bytes per output
  pixel: 14 MB for a 24->8 3x3 convolution at 256x256), a uint8 GEMM into an int32 buffer and
  a separate requantization pass. It is memory-bound and barely gains from a second thread.

Measured on the default UNet (width 0.25) at 256x256 on a 2-core AVX2 EPYC (no VNNI), per node,
2 threads, ONNX Runtime 1.32: convolutions on the symmetric path run 1.7-2.2x faster than
float32, while the full-resolution ones with 8 output channels (generic path) run 1.2-1.7x
*slower* than the float32 NCHWc kernels, the 1x1 head 5x (docs/benchmarks/index.md, "INT8
quantization on the CPU").

:func:`float_for_speed` therefore keeps in float every convolution that would take the generic
path, and every data-movement node (Concat, Resize, MaxPool, ...) that does not sit between
two int8 convolutions, so that no tensor is quantized only to be dequantized again.

On an x86 CPU with VNNI (AVX512-VNNI or AVX-VNNI: ``vpdpbusd`` does a u8 x s8 dot product in
one instruction; Intel Ice Lake / Sapphire Rapids and later, AMD Zen 4 and later) the generic
path's GEMM runs on it too and beats float32 at any channel count: measured on a 2-core Xeon
with AMX and AVX512-VNNI, the half-width UNet at 256x256 runs 1.88x faster than float32 with
every convolution int8 against 1.79x with the 3-channel stem and the 4-class head left float
(``tools/bench_quant.py --all-int8``). The plan therefore depends on the CPU that will run the
model (``cpu_isa``: ``vnni`` or ``no-vnni``; :func:`detect_cpu_isa` reads this machine's).
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from typing import Optional

from edgeseg._platform import cpuinfo_field

__all__ = ["COMPUTE_OPS", "CPU_ISAS", "conv_int8_fast", "detect_cpu_isa", "float_for_speed"]

#: what ``cpu_isa`` can be: the int8 instructions of the CPU that will run the model
CPU_ISAS = ("vnni", "no-vnni")

#: Nodes whose int8 kernel does the arithmetic; every other node only moves or combines data.
COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
#: Activations ONNX Runtime fuses into the preceding int8 convolution (they follow its choice).
_FUSED_ACTIVATIONS = frozenset({"Relu", "Clip"})


def detect_cpu_isa(cpuinfo: Optional[str] = None) -> str:
    """``vnni`` on an x86 CPU with AVX512-VNNI or AVX-VNNI, else ``no-vnni`` (``cpuinfo``: the
    text of ``/proc/cpuinfo``, read when not given; unreadable counts as no VNNI)."""
    if cpuinfo is None and platform.machine().lower() not in ("x86_64", "amd64"):
        return "no-vnni"
    flags = set((cpuinfo_field("flags", cpuinfo) or "").split())
    return "vnni" if flags & {"avx512_vnni", "avx_vnni"} else "no-vnni"


def conv_int8_fast(
    cin_per_group: int, cout: int, group: int, cpu_isa: str = "no-vnni"
) -> tuple[bool, str]:
    """``(fast, why)``: whether ONNX Runtime's x86 int8 convolution beats float32 for these
    weights on a CPU with ``cpu_isa`` (without VNNI: only on the symmetric indirect path), and
    the reason when it does not."""
    cin = cin_per_group * group
    if cpu_isa == "vnni" and group == 1:
        return True, f"{cin}->{cout} channels (VNNI)"
    if group > 1:
        if cin_per_group == 1 and cout == group:
            if cout % 16 == 0:
                return True, "depthwise, channels a multiple of 16"
            return False, f"depthwise with {cout} channels (int8 needs a multiple of 16)"
        return False, f"grouped convolution ({group} groups) has no fast int8 kernel"
    if cout < 16:
        return False, f"{cout} output channels (the int8 kernel needs at least 16)"
    if cout % 8:
        return False, f"{cout} output channels (the int8 kernel needs a multiple of 8)"
    if cin % 4:
        return False, f"{cin} input channels (the int8 kernel needs a multiple of 4)"
    return True, f"{cin}->{cout} channels"


def _float_tensors(model) -> set[str]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    values = list(g.value_info) + list(g.input) + list(g.output)
    return {v.name for v in values if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}


def float_for_speed(
    model, keep_float: Iterable[str] = (), cpu_isa: Optional[str] = None
) -> dict[str, str]:
    """``{node name: reason}``: nodes of the float ``model`` (an ``onnx.ModelProto``) to leave
    in float for ``--target cpu`` because int8 would be slower there. ``keep_float``: nodes the
    caller keeps float anyway (accuracy); data-movement nodes next to them follow.
    ``cpu_isa``: ``vnni`` or ``no-vnni`` for the CPU that will run the model (None: this one)."""
    cpu_isa = cpu_isa or detect_cpu_isa()
    if cpu_isa not in CPU_ISAS:
        raise ValueError(f"cpu_isa {cpu_isa!r}: use one of {', '.join(CPU_ISAS)}")
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    floats = _float_tensors(model)
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            if i in floats:
                consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}
    forced = set(keep_float)

    out: dict[str, str] = {}
    int8: dict[str, bool] = {}
    for n in g.node:
        if n.op_type not in COMPUTE_OPS:
            continue
        fast, why = True, ""
        if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in inits:
            dims = list(inits[n.input[1]].dims)
            group = next((a.i for a in n.attribute if a.name == "group"), 1)
            if len(dims) >= 3:
                fast, why = conv_int8_fast(dims[1], dims[0], group, cpu_isa)
        elif n.op_type == "ConvTranspose":
            fast, why = False, "ONNX Runtime has no int8 ConvTranspose on the CPU"
        int8[n.name] = fast and n.name not in forced
        if not fast:
            out[n.name] = why

    def fused_into(n):
        """The compute node whose output ``n`` (a Relu/Clip) activates in place, if any."""
        if n.op_type not in _FUSED_ACTIVATIONS or not n.input:
            return None
        p = producer.get(n.input[0])
        if p is not None and p.op_type in COMPUTE_OPS and len(consumers.get(p.output[0], [])) == 1:
            return p
        return None

    def reach(start, up: bool) -> list[bool]:
        """int8 decisions of the nearest compute nodes up- or downstream of ``start`` along
        float tensors (a graph input or output counts as float)."""
        seen, todo, found = set(), [start], []
        while todo:
            n = todo.pop()
            if n.name in seen:
                continue
            seen.add(n.name)
            names = n.input if up else n.output
            for t in names:
                if t not in floats or t in inits:
                    continue
                if up:
                    nxt = [producer[t]] if t in producer else []
                    if not nxt:  # a graph input: float
                        found.append(False)
                else:
                    nxt = consumers.get(t, [])
                    if t in outputs:  # a graph output: float
                        found.append(False)
                for m in nxt:
                    if m.op_type in COMPUTE_OPS:
                        found.append(int8[m.name])
                    else:
                        todo.append(m)
        return found

    for n in g.node:
        if n.op_type in COMPUTE_OPS or not any(o in floats for o in n.output):
            continue
        host = fused_into(n)
        if host is not None:
            if not int8[host.name] and host.name not in forced:
                out[n.name] = f"activation of {host.name}, which stays float"
            continue
        if n.name in forced:
            continue
        up, down = reach(n, up=True), reach(n, up=False)
        if not (up and down and all(up) and all(down)):
            out[n.name] = "not between two int8 convolutions (int8 would only add conversions)"
    return out
