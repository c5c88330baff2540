// The private native module edgeseg._core. Only this folder includes pybind11.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>

#include "bindings.h"
#include "edgeseg/build_info.h"
#include "edgeseg/errors.h"
#include "edgeseg/parallel.h"

namespace py = pybind11;

namespace {

// Exception classes live in the native module so C++ errors map onto them directly; the
// Python package re-exports them (edgeseg.EdgesegError is the root of every edgeseg error).
PyObject* gRootError = nullptr;
PyObject* gInvalidArgument = nullptr;
PyObject* gCudaError = nullptr;
PyObject* gTensorRTError = nullptr;

void registerErrors(py::module_& m) {
    gRootError = PyErr_NewExceptionWithDoc(
        "edgeseg.EdgesegError", "Root of every error edgeseg raises.", PyExc_Exception, nullptr);
    py::tuple invalidBases = py::make_tuple(py::handle(gRootError), py::handle(PyExc_ValueError));
    gInvalidArgument = PyErr_NewExceptionWithDoc(
        "edgeseg.InvalidArgumentError",
        "An argument has the wrong shape, dtype or value (also a ValueError).", invalidBases.ptr(),
        nullptr);
    py::tuple runtimeBases = py::make_tuple(py::handle(gRootError), py::handle(PyExc_RuntimeError));
    gCudaError = PyErr_NewExceptionWithDoc("edgeseg.CudaError",
                                           "A CUDA runtime call failed (names call, file, line).",
                                           runtimeBases.ptr(), nullptr);
    // Registered in every build (not only those with TensorRT), so that `except
    // edgeseg.TensorRTError` is valid code wherever edgeseg is installed.
    gTensorRTError = PyErr_NewExceptionWithDoc(
        "edgeseg.TensorRTError",
        "A TensorRT call failed (an engine that does not deserialize or has unusable I/O, a "
        "rejected shape, a failed enqueue); the message carries TensorRT's logged errors.",
        runtimeBases.ptr(), nullptr);
    m.add_object("EdgesegError", py::handle(gRootError));
    m.add_object("InvalidArgumentError", py::handle(gInvalidArgument));
    m.add_object("CudaError", py::handle(gCudaError));
    m.add_object("TensorRTError", py::handle(gTensorRTError));
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) {
                std::rethrow_exception(p);
            }
        } catch (const std::invalid_argument& e) {
            PyErr_SetString(gInvalidArgument, e.what());
        } catch (const edgeseg::CudaError& e) {
            PyErr_SetString(gCudaError, e.what());
        } catch (const edgeseg::TensorRTError& e) {
            PyErr_SetString(gTensorRTError, e.what());
        }
    });
}

py::dict buildInfoDict() {
    edgeseg::BuildInfo info = edgeseg::buildInfo();
    py::dict d;
    d["cuda"] = info.cuda;
    d["tensorrt"] = info.tensorrt.empty() ? py::object(py::none())
                                          : py::object(py::str(info.tensorrt));
    d["cuda_archs"] = info.cudaArchs;
    d["simd"] = info.simd;
    d["threads"] = info.threads;
    d["version"] = info.version;
    d["compiler"] = info.compiler;
    return d;
}

} // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "edgeseg native core: fused pre/postprocessing kernels (CPU, CUDA when built).";
    registerErrors(m);

    m.def("build_info", &buildInfoDict,
          "What this build contains: {'cuda': bool, 'tensorrt': 'x.y' or None, "
          "'cuda_archs': [...], 'simd': str, 'threads': int, 'version': str, 'compiler': str}.");
    m.def("num_threads", &edgeseg::numThreads, "Threads the CPU kernels use.");
    m.def(
        "set_num_threads",
        [](int n) {
            edgeseg::require(n >= 1, "set_num_threads: n must be >= 1, got " + std::to_string(n));
            edgeseg::setNumThreads(n);
        },
        py::arg("n"), "Sets the number of threads the CPU kernels use (>= 1).");

    m.def("simd_level", &edgeseg::simdLevel,
          "The instruction-set tier the CPU kernels use now (see build_info()['simd']).");
    m.def("set_simd_level", &edgeseg::setSimdLevel, py::arg("level"),
          "Forces a tier the CPU runs ('scalar', 'sse2', 'avx2', 'avx512', 'neon'; '' for "
          "automatic) for the whole process, from the next kernel call.");

    edgeseg::bindings::bindKernels(m);
#ifdef EDGESEG_HAS_TENSORRT
    edgeseg::bindings::bindEngine(m);
#endif
}
