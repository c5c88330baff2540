// edgeseg._core.TrtEngine: the C++ TensorRT runtime (only in builds with TensorRT).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "bindings.h"
#include "edgeseg/engine.h"
#include "edgeseg/errors.h"

namespace py = pybind11;

namespace edgeseg::bindings {
namespace {

/// C-contiguous so that palette->data() really is C x 3 packed colours (a sliced or transposed
/// array is copied into that layout by the caster).
using Palette = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;

/// frame (HxWx3 uint8, packed pixels) -> (class_map, confidence|None, overlay|None, counts,
/// nonfinite, nonfinite_input): the non-finite output pixels and the NaN/inf input values.
py::tuple runEngine(TrtEngine& engine, const py::array& frame, const std::vector<float>& mean,
                    const std::vector<float>& stddev, bool swapRB, bool letterbox,
                    const std::optional<Palette>& palette, float alpha, bool confidence,
                    const std::vector<int>& ignore) {
    require(frame.dtype().is(py::dtype::of<uint8_t>()) && frame.ndim() == 3 &&
                frame.shape(2) == 3 && frame.strides(2) == 1 && frame.strides(1) == 3,
            "frame: expected an HxWx3 uint8 array with packed pixels");
    require(mean.size() == 3 && stddev.size() == 3, "mean/std: expected three values each");
    ImageView v;
    v.data = static_cast<const uint8_t*>(frame.data());
    v.height = static_cast<int>(frame.shape(0));
    v.width = static_cast<int>(frame.shape(1));
    v.channels = 3;
    v.rowStride = frame.strides(0);
    v.pixelStride = 3;
    require(v.height > 0 && v.width > 0, "frame: empty");
    // The upload is one 2-D copy with a positive pitch: rows must not overlap or run backwards
    // (e.g. frame[::-1]).
    require(v.rowStride >= static_cast<py::ssize_t>(v.width) * 3,
            "frame: rows must be stored top to bottom without overlap (use np.ascontiguousarray)");
    PreprocessParams pre;
    pre.outHeight = engine.inputHeight();
    pre.outWidth = engine.inputWidth();
    pre.outChannels = 3;
    for (int i = 0; i < 3; ++i) {
        pre.mean[i] = mean[i];
        pre.stddev[i] = stddev[i];
    }
    pre.swapRB = swapRB;
    pre.letterbox = letterbox;
    std::array<uint8_t, 256> transparent{};
    for (int c : ignore) {
        require(c >= 0 && c < 256, "ignore: class ids must be 0..255");
        transparent[static_cast<size_t>(c)] = 1;
    }
    PostprocessParams post;
    post.outHeight = v.height;
    post.outWidth = v.width;
    post.alpha = alpha;
    post.transparent = transparent.data();
    const py::ssize_t h = v.height, w = v.width, c = engine.numClasses();
    py::array_t<uint8_t> classMap({h, w});
    py::object conf = py::none(), overlay = py::none();
    py::array_t<int64_t> counts({c});
    PostprocessOutputs out;
    out.classMap = classMap.mutable_data();
    out.counts = counts.mutable_data();
    if (confidence) {
        py::array_t<float> a({h, w});
        out.confidence = a.mutable_data();
        conf = a;
    }
    if (palette) {
        require(palette->ndim() == 2 && palette->shape(1) == 3 && palette->shape(0) >= c,
                "palette: expected (C, 3) uint8 colours");
        post.palette = palette->data();
        py::array_t<uint8_t> a({h, w, py::ssize_t{3}});
        out.overlay = a.mutable_data();
        overlay = a;
    }
    int64_t nonfinite = 0, nonfiniteInput = 0;
    out.nonfinite = &nonfinite;
    {
        py::gil_scoped_release release;
        engine.run(v, pre, post, out, &nonfiniteInput);
    }
    return py::make_tuple(classMap, conf, overlay, counts, nonfinite, nonfiniteInput);
}

py::array_t<float> inferEngine(TrtEngine& engine,
                               const py::array_t<float, py::array::c_style>& blob) {
    require(blob.ndim() == 4 && blob.shape(1) == 3 && blob.shape(2) == engine.inputHeight() &&
                blob.shape(3) == engine.inputWidth(),
            "blob: expected N x 3 x " + std::to_string(engine.inputHeight()) + " x " +
                std::to_string(engine.inputWidth()) + " float32");
    const py::ssize_t n = blob.shape(0);
    require(n >= 1, "blob: the batch must hold at least one image");
    py::array_t<float> logits({n, py::ssize_t{engine.numClasses()},
                               py::ssize_t{engine.logitsHeight()},
                               py::ssize_t{engine.logitsWidth()}});
    float* dst = logits.mutable_data();
    const float* src = blob.data();
    {
        py::gil_scoped_release release;
        engine.infer(src, static_cast<int>(n), dst);
    }
    return logits;
}

} // namespace

void bindEngine(py::module_& m) {
    py::class_<TrtEngine>(m, "TrtEngine",
                          "A deserialized TensorRT engine on one CUDA stream: CUDA preprocess -> "
                          "enqueueV3 -> CUDA fused postprocess, replayed as one CUDA graph once "
                          "warm.")
        .def(py::init([](const std::string& path, int device, bool cudaGraph) {
                 TrtEngineOptions o;
                 o.device = device;
                 o.cudaGraph = cudaGraph;
                 return std::make_unique<TrtEngine>(path, o);
             }),
             py::arg("path"), py::arg("device") = 0, py::arg("cuda_graph") = true,
             py::call_guard<py::gil_scoped_release>())
        .def_property_readonly(
            "input_size",
            [](const TrtEngine& e) { return py::make_tuple(e.inputHeight(), e.inputWidth()); })
        .def_property_readonly(
            "logits_size",
            [](const TrtEngine& e) { return py::make_tuple(e.logitsHeight(), e.logitsWidth()); })
        .def_property_readonly("num_classes", &TrtEngine::numClasses)
        .def_property_readonly("integrated", &TrtEngine::integrated)
        .def_property_readonly("device_name", &TrtEngine::deviceName)
        .def_property_readonly("tensors",
                               [](const TrtEngine& e) {
                                   py::list out;
                                   for (const auto& t : e.tensors()) {
                                       py::dict d;
                                       d["name"] = t.name;
                                       d["shape"] = t.shape;
                                       d["dtype"] = t.dtype;
                                       d["input"] = t.isInput;
                                       out.append(d);
                                   }
                                   return out;
                               })
        .def_static("tensorrt_version", &TrtEngine::tensorrtVersion)
        .def("run", &runEngine, py::arg("frame"), py::arg("mean"), py::arg("std"),
             py::arg("swap_rb"), py::arg("letterbox"), py::arg("palette"), py::arg("alpha"),
             py::arg("confidence"), py::arg("ignore"))
        .def("infer", &inferEngine, py::arg("blob"))
        .def("last_timings", [](const TrtEngine& e) {
            TrtTimings t = e.lastTimings();
            py::dict d;
            d["upload"] = t.upload;
            d["preprocess"] = t.preprocess;
            d["inference"] = t.inference;
            d["postprocess"] = t.postprocess;
            d["download"] = t.download;
            d["cuda_graph"] = t.graph;
            return d;
        });
}

} // namespace edgeseg::bindings
