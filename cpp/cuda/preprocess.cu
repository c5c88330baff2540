// PLACEHOLDER: replaced by the real kernel.
#include "edgeseg/cuda_kernels.h"
#include "edgeseg/errors.h"
namespace edgeseg::cuda {
Letterbox preprocessHost(const ImageView&, const PreprocessParams&, void*) {
    throw std::invalid_argument("cuda preprocess: not implemented yet");
}
} // namespace edgeseg::cuda
