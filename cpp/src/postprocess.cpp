// PLACEHOLDER: replaced by the real kernel.
#include "edgeseg/postprocess.h"
#include "edgeseg/errors.h"
namespace edgeseg {
void postprocess(const LogitsView&, const PostprocessParams&, const PostprocessOutputs&) {
    throw std::invalid_argument("postprocess: not implemented yet");
}
} // namespace edgeseg
