// PLACEHOLDER: replaced by the real kernel.
#include "edgeseg/preprocess.h"
#include "edgeseg/errors.h"
namespace edgeseg {
Letterbox preprocess(const ImageView&, const PreprocessParams&, void*) {
    throw std::invalid_argument("preprocess: not implemented yet");
}
} // namespace edgeseg
