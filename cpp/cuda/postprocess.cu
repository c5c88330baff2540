// PLACEHOLDER: replaced by the real kernel.
#include "edgeseg/cuda_kernels.h"
#include "edgeseg/errors.h"
namespace edgeseg::cuda {
void postprocessHost(const LogitsView&, const PostprocessParams&, const PostprocessOutputs&) {
    throw std::invalid_argument("cuda postprocess: not implemented yet");
}
} // namespace edgeseg::cuda
