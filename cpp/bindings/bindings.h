#pragma once
#include <pybind11/pybind11.h>

namespace edgeseg::bindings {

/// preprocess / postprocess / Letterbox / CUDA twins.
void bindKernels(pybind11::module_& m);

#ifdef EDGESEG_HAS_TENSORRT
/// TrtEngine (only in builds with TensorRT).
void bindEngine(pybind11::module_& m);
#endif

} // namespace edgeseg::bindings
