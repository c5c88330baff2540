#pragma once
/// A small persistent thread pool shared by the CPU kernels (threads are created once, so a
/// camera loop does not pay thread start-up per frame).
#include <functional>

namespace edgeseg {

/// Number of threads the kernels use (default: hardware concurrency, at least 1).
int numThreads();

/// Sets the number of kernel threads (>= 1). Not safe to call while a kernel runs.
void setNumThreads(int n);

/// Splits [0, n) into at most numThreads() contiguous chunks of at least `minChunk` items and
/// runs fn(begin, end) for each, the calling thread taking one chunk. Blocks until all are
/// done; the first exception thrown by a chunk is rethrown here.
void parallelFor(int n, int minChunk, const std::function<void(int, int)>& fn);

} // namespace edgeseg
