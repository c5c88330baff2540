// Bindings of the fused kernels. The Python wrapper (edgeseg/kernels.py) normalizes inputs and
// gives friendly errors; these functions still check every shape they rely on, since a bad
// pointer here would crash the interpreter.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "bindings.h"
#include "buffer_pool.h"
#include "edgeseg/cuda_kernels.h"
#include "edgeseg/errors.h"
#include "edgeseg/postprocess.h"
#include "edgeseg/preprocess.h"

#ifdef EDGESEG_HAS_CUDA
#include "../cuda/postprocess.cuh"
#endif

namespace py = pybind11;

namespace edgeseg::bindings {
namespace {

std::string shapeOf(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) {
        s += (i ? ", " : "") + std::to_string(a.shape(i));
    }
    return s + (a.ndim() == 1 ? ",)" : ")");
}

/// A view of a uint8 HW / HWC array (channel stride must be 1 when C > 1).
ImageView imageView(const py::array& a, const std::string& name) {
    require(a.dtype().is(py::dtype::of<uint8_t>()),
            name + ": expected a uint8 image, got dtype " + std::string(py::str(a.dtype())));
    require(a.ndim() == 2 || a.ndim() == 3,
            name + ": expected an HxW or HxWxC image, got shape " + shapeOf(a));
    ImageView v;
    v.data = static_cast<const uint8_t*>(a.data());
    v.height = static_cast<int>(a.shape(0));
    v.width = static_cast<int>(a.shape(1));
    v.channels = a.ndim() == 3 ? static_cast<int>(a.shape(2)) : 1;
    v.rowStride = a.strides(0);
    v.pixelStride = a.strides(1);
    require(v.height > 0 && v.width > 0, name + ": image is empty, shape " + shapeOf(a));
    require(v.channels == 1 || v.channels == 3,
            name + ": expected 1 or 3 channels, got shape " + shapeOf(a));
    require(v.channels == 1 || a.strides(2) == 1,
            name + ": the channels of a pixel must be contiguous (use np.ascontiguousarray)");
    return v;
}

py::object letterboxOrNone(const Letterbox& lb, bool used) {
    return used ? py::cast(lb) : py::object(py::none());
}

py::tuple preprocessImpl(const std::vector<py::array>& images, int outHeight, int outWidth,
                         int outChannels, const std::vector<float>& mean,
                         const std::vector<float>& stddev, bool swapRB, bool float16,
                         bool letterbox, int padValue, bool useCuda) {
    require(!images.empty(), "images: expected at least one image, got an empty list");
    require(outHeight > 0 && outWidth > 0, "size: expected positive (h, w), got (" +
                                               std::to_string(outHeight) + ", " +
                                               std::to_string(outWidth) + ")");
    require(outChannels == 1 || outChannels == 3,
            "mean/std: expected 1 or 3 values, got " + std::to_string(outChannels));
    require(mean.size() == static_cast<size_t>(outChannels) &&
                stddev.size() == static_cast<size_t>(outChannels),
            "mean/std: expected " + std::to_string(outChannels) + " values each");
    require(padValue >= 0 && padValue <= 255,
            "pad_value: expected 0..255, got " + std::to_string(padValue));
    PreprocessParams params;
    params.outHeight = outHeight;
    params.outWidth = outWidth;
    params.outChannels = outChannels;
    for (int c = 0; c < outChannels; ++c) {
        require(stddev[c] != 0.0f, "std: values must be non-zero");
        params.mean[c] = mean[c];
        params.stddev[c] = stddev[c];
    }
    params.swapRB = swapRB;
    params.dtype = float16 ? DType::Float16 : DType::Float32;
    params.letterbox = letterbox;
    params.padValue = static_cast<uint8_t>(padValue);

    std::vector<ImageView> views;
    views.reserve(images.size());
    for (size_t i = 0; i < images.size(); ++i) {
        views.push_back(imageView(images[i], "images[" + std::to_string(i) + "]"));
        require(!(views.back().channels == 3 && outChannels == 1),
                "images[" + std::to_string(i) +
                    "]: a 3-channel image needs 3 mean/std values (got 1)");
    }
    const py::ssize_t n = static_cast<py::ssize_t>(images.size());
    std::vector<py::ssize_t> shape{n, outChannels, outHeight, outWidth};
    py::array blob = pooledArray(float16 ? py::dtype("float16") : py::dtype::of<float>(), shape);
    const size_t planeBytes = static_cast<size_t>(outChannels) * outHeight * outWidth *
                              (float16 ? 2 : 4);
    auto* dst = static_cast<uint8_t*>(blob.mutable_data());
    std::vector<Letterbox> transforms(views.size());
    py::array_t<int64_t> nonfinite(n);
    int64_t* nonfiniteData = nonfinite.mutable_data();
    {
        py::gil_scoped_release release;
        for (size_t i = 0; i < views.size(); ++i) {
#ifdef EDGESEG_HAS_CUDA
            if (useCuda) {
                transforms[i] = cuda::preprocessHost(views[i], params, dst + i * planeBytes,
                                                     nonfiniteData + i);
                continue;
            }
#endif
            require(!useCuda, "device: this build of edgeseg has no CUDA support");
            transforms[i] = preprocess(views[i], params, dst + i * planeBytes, nonfiniteData + i);
        }
    }
    py::list lbs;
    for (const auto& t : transforms) {
        lbs.append(letterboxOrNone(t, letterbox));
    }
    return py::make_tuple(blob, lbs, nonfinite);
}

py::tuple postprocessImpl(const py::array& logits, int outHeight, int outWidth,
                          const std::optional<std::vector<py::array>>& frames,
                          const std::optional<py::array>& palette, float alpha, bool confidence,
                          bool counts, const std::vector<int>& ignore,
                          const std::optional<std::vector<Letterbox>>& letterboxes, bool useCuda) {
    const bool f16 = logits.dtype().is(py::dtype("float16"));
    require(f16 || logits.dtype().is(py::dtype::of<float>()),
            "logits: expected float32 or float16, got " + std::string(py::str(logits.dtype())));
    require(logits.ndim() == 4, "logits: expected (N, C, h, w), got shape " + shapeOf(logits));
    require(logits.flags() & py::array::c_style,
            "logits: expected a C-contiguous array (use np.ascontiguousarray)");
    const int n = static_cast<int>(logits.shape(0));
    const int c = static_cast<int>(logits.shape(1));
    const int h = static_cast<int>(logits.shape(2));
    const int w = static_cast<int>(logits.shape(3));
    require(n >= 1, "logits: batch is empty, shape " + shapeOf(logits));
    require(c >= 1 && c <= 255, "logits: expected 1..255 classes (C), got C=" + std::to_string(c));
    require(h >= 1 && w >= 1, "logits: spatial size is empty, shape " + shapeOf(logits));
    require(outHeight >= 1 && outWidth >= 1, "out_size: expected positive (H, W), got (" +
                                                 std::to_string(outHeight) + ", " +
                                                 std::to_string(outWidth) + ")");
    require(alpha >= 0.0f && alpha <= 1.0f, "alpha: expected 0..1, got " + std::to_string(alpha));

    std::vector<ImageView> frameViews;
    if (frames) {
        require(static_cast<int>(frames->size()) == n,
                "frame: expected " + std::to_string(n) + " frame(s) for a batch of " +
                    std::to_string(n) + ", got " + std::to_string(frames->size()));
        for (int i = 0; i < n; ++i) {
            ImageView v = imageView((*frames)[i], "frame[" + std::to_string(i) + "]");
            require(v.channels == 3, "frame[" + std::to_string(i) + "]: expected HxWx3");
            require(v.height == outHeight && v.width == outWidth,
                    "frame[" + std::to_string(i) + "]: expected size " + std::to_string(outHeight) +
                        "x" + std::to_string(outWidth) + " (out_size), got " +
                        shapeOf((*frames)[i]));
            frameViews.push_back(v);
        }
    }
    const uint8_t* paletteData = nullptr;
    if (palette) {
        require(palette->dtype().is(py::dtype::of<uint8_t>()) && palette->ndim() == 2 &&
                    palette->shape(0) >= c && palette->shape(1) == 3 &&
                    (palette->flags() & py::array::c_style),
                "palette: expected a C-contiguous uint8 array of shape (C, 3) with C >= " +
                    std::to_string(c) + ", got " + shapeOf(*palette));
        paletteData = static_cast<const uint8_t*>(palette->data());
    }
    std::array<uint8_t, 256> transparent{};
    for (int id : ignore) {
        require(id >= 0 && id < 256, "ignore: class ids must be 0..255, got " + std::to_string(id));
        transparent[id] = 1;
    }
    if (letterboxes) {
        require(static_cast<int>(letterboxes->size()) == n,
                "letterbox: expected one transform per image");
        for (const auto& lb : *letterboxes) {
            require(lb.srcWidth == outWidth && lb.srcHeight == outHeight,
                    "letterbox: out_size must equal the letterboxed frame's size (" +
                        std::to_string(lb.srcHeight) + ", " + std::to_string(lb.srcWidth) + ")");
        }
    }

    const bool wantOverlay = frames.has_value() && paletteData != nullptr;
    py::array_t<uint8_t> classMap = pooledArray<uint8_t>({n, outHeight, outWidth});
    py::object confArr = py::none(), overlayArr = py::none(), countsArr = py::none();
    float* confData = nullptr;
    uint8_t* overlayData = nullptr;
    int64_t* countsData = nullptr;
    if (confidence) {
        py::array_t<float> a = pooledArray<float>({n, outHeight, outWidth});
        confData = a.mutable_data();
        confArr = a;
    }
    if (wantOverlay) {
        py::array_t<uint8_t> a = pooledArray<uint8_t>({n, outHeight, outWidth, 3});
        overlayData = a.mutable_data();
        overlayArr = a;
    }
    if (counts) {
        py::array_t<int64_t> a = pooledArray<int64_t>({n, c});
        countsData = a.mutable_data();
        countsArr = a;
    }
    py::array_t<int64_t> nonfinite(n);
    int64_t* nonfiniteData = nonfinite.mutable_data();
    const size_t pixels = static_cast<size_t>(outHeight) * outWidth;
    const size_t logitsStride = static_cast<size_t>(c) * h * w * (f16 ? 2 : 4);
    const auto* logitsData = static_cast<const uint8_t*>(logits.data());
    uint8_t* classData = classMap.mutable_data();
    {
        py::gil_scoped_release release;
        for (int i = 0; i < n; ++i) {
            LogitsView lv;
            lv.data = logitsData + i * logitsStride;
            lv.dtype = f16 ? DType::Float16 : DType::Float32;
            lv.channels = c;
            lv.height = h;
            lv.width = w;
            PostprocessParams params;
            params.outHeight = outHeight;
            params.outWidth = outWidth;
            params.letterbox = letterboxes ? &(*letterboxes)[i] : nullptr;
            params.alpha = alpha;
            params.palette = paletteData;
            params.transparent = transparent.data();
            PostprocessOutputs out;
            out.classMap = classData + i * pixels;
            out.confidence = confData ? confData + i * pixels : nullptr;
            out.overlay = overlayData ? overlayData + i * pixels * 3 : nullptr;
            out.counts = countsData ? countsData + static_cast<size_t>(i) * c : nullptr;
            out.nonfinite = nonfiniteData + i;
            out.frame = wantOverlay ? &frameViews[i] : nullptr;
#ifdef EDGESEG_HAS_CUDA
            if (useCuda) {
                cuda::postprocessHost(lv, params, out);
                continue;
            }
#endif
            require(!useCuda, "device: this build of edgeseg has no CUDA support");
            postprocess(lv, params, out);
        }
    }
    return py::make_tuple(classMap, confArr, overlayArr, countsArr, nonfinite);
}

} // namespace

void bindKernels(py::module_& m) {
    // Module-local: another build of this module (edgeseg bench --compare-core) can then be
    // imported beside it without a clash in pybind11's global type registry.
    py::class_<Letterbox>(m, "Letterbox", py::module_local(),
                          "Where a frame sits in a letterboxed network input: the frame "
                          "(src_width x src_height) was resized to resized_width x "
                          "resized_height and pasted at (pad_x, pad_y) into an input_width x "
                          "input_height canvas. Pass it to postprocess(letterbox=...) to map "
                          "the logits back onto the frame.")
        .def(py::init([](int srcW, int srcH, int inW, int inH) {
                 return makeLetterbox(srcW, srcH, inW, inH);
             }),
             py::arg("src_width"), py::arg("src_height"), py::arg("input_width"),
             py::arg("input_height"))
        .def_readonly("src_width", &Letterbox::srcWidth)
        .def_readonly("src_height", &Letterbox::srcHeight)
        .def_readonly("input_width", &Letterbox::inputWidth)
        .def_readonly("input_height", &Letterbox::inputHeight)
        .def_readonly("resized_width", &Letterbox::resizedWidth)
        .def_readonly("resized_height", &Letterbox::resizedHeight)
        .def_readonly("pad_x", &Letterbox::padX)
        .def_readonly("pad_y", &Letterbox::padY)
        .def_readonly("scale", &Letterbox::scale)
        .def(py::pickle(
            [](const Letterbox& lb) {
                return py::make_tuple(lb.srcWidth, lb.srcHeight, lb.inputWidth, lb.inputHeight);
            },
            [](const py::tuple& t) {
                return makeLetterbox(t[0].cast<int>(), t[1].cast<int>(), t[2].cast<int>(),
                                     t[3].cast<int>());
            }))
        .def("__repr__", [](const Letterbox& lb) {
            return "Letterbox(src=" + std::to_string(lb.srcWidth) + "x" +
                   std::to_string(lb.srcHeight) + ", input=" + std::to_string(lb.inputWidth) + "x" +
                   std::to_string(lb.inputHeight) + ", resized=" + std::to_string(lb.resizedWidth) +
                   "x" + std::to_string(lb.resizedHeight) + ", pad=(" + std::to_string(lb.padX) +
                   ", " + std::to_string(lb.padY) + "))";
        });

    m.def("preprocess", &preprocessImpl, py::arg("images"), py::arg("out_height"),
          py::arg("out_width"), py::arg("out_channels"), py::arg("mean"), py::arg("std"),
          py::arg("swap_rb"), py::arg("float16"), py::arg("letterbox"), py::arg("pad_value"),
          py::arg("cuda") = false,
          "Low-level fused preprocess; use edgeseg.kernels.preprocess. Returns (blob, "
          "[Letterbox or None per image], nonfinite): nonfinite (int64, one per image) counts "
          "the NaN/inf values written. Unlike the wrapper, it does not refuse a mean/std whose "
          "normalized range overflows the output dtype; it counts the result.");
    m.def("postprocess", &postprocessImpl, py::arg("logits"), py::arg("out_height"),
          py::arg("out_width"), py::arg("frames"), py::arg("palette"), py::arg("alpha"),
          py::arg("confidence"), py::arg("counts"), py::arg("ignore"), py::arg("letterbox"),
          py::arg("cuda") = false,
          "Low-level fused postprocess; use edgeseg.kernels.postprocess. Returns (class_map, "
          "confidence|None, overlay|None, counts|None, nonfinite), all with a leading batch "
          "axis; nonfinite (int64) counts the output pixels read from non-finite logits.");
#ifdef EDGESEG_HAS_CUDA
    m.def(
        "cuda_postprocess_ptr",
        [](uintptr_t logits, bool float16, int channels, int height, int width, int outHeight,
           int outWidth, uintptr_t classMap, uintptr_t confidence, uintptr_t stream,
           uintptr_t nonfinite) {
            require(logits != 0 && classMap != 0, "cuda_postprocess_ptr: null device pointer");
            LogitsView lv;
            lv.data = reinterpret_cast<const void*>(logits);
            lv.dtype = float16 ? DType::Float16 : DType::Float32;
            lv.channels = channels;
            lv.height = height;
            lv.width = width;
            std::array<uint8_t, 256> transparent{};
            PostprocessParams params;
            params.outHeight = outHeight;
            params.outWidth = outWidth;
            params.transparent = transparent.data();
            PostprocessOutputs out;
            out.classMap = reinterpret_cast<uint8_t*>(classMap);
            out.confidence = reinterpret_cast<float*>(confidence);
            out.nonfinite = reinterpret_cast<int64_t*>(nonfinite);
            cuda::postprocess(lv, params, out, reinterpret_cast<cudaStream_t>(stream));
        },
        py::arg("logits"), py::arg("float16"), py::arg("channels"), py::arg("height"),
        py::arg("width"), py::arg("out_height"), py::arg("out_width"), py::arg("class_map"),
        py::arg("confidence"), py::arg("stream"), py::arg("nonfinite") = 0,
        py::call_guard<py::gil_scoped_release>(),
        "Device-pointer postprocess for benchmarks and zero-copy integrations (e.g. torch "
        "tensors' data_ptr() and a stream handle): C x h x w logits already on the GPU -> H x W "
        "class map (+ confidence when non-zero, + the int64 non-finite pixel count at "
        "`nonfinite` when non-zero), enqueued on `stream`, not synchronized.");
#endif
    m.def(
        "cuda_available",
        []() {
#ifdef EDGESEG_HAS_CUDA
            std::string reason;
            bool ok = cuda::available(&reason);
            return py::make_tuple(ok, reason);
#else
            return py::make_tuple(false, std::string("edgeseg was built without CUDA"));
#endif
        },
        "(usable, reason): whether the CUDA kernels can run here, and why not.");
}

} // namespace edgeseg::bindings
