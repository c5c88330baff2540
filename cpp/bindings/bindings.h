#pragma once
#include <pybind11/pybind11.h>

namespace edgeseg::bindings {

/// preprocess / postprocess / Letterbox / CUDA twins.
void bindKernels(pybind11::module_& m);

} // namespace edgeseg::bindings
