#pragma once
/// Error types of the edgeseg core. Bad arguments throw std::invalid_argument, CUDA failures
/// CudaError and TensorRT failures TensorRTError; the bindings map them onto
/// edgeseg.InvalidArgumentError (a ValueError), edgeseg.CudaError and edgeseg.TensorRTError
/// (both RuntimeErrors), all subclasses of edgeseg.EdgesegError.
#include <stdexcept>
#include <string>

namespace edgeseg {

/// A CUDA runtime call failed; the message names the call, the file and the line.
class CudaError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// A TensorRT call failed; the message carries TensorRT's logged errors.
class TensorRTError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Throws std::invalid_argument with `message` unless `condition` holds.
inline void require(bool condition, const std::string& message) {
    if (!condition) {
        throw std::invalid_argument(message);
    }
}

} // namespace edgeseg
