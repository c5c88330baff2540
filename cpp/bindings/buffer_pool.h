#pragma once
// Recycled output buffers for the kernels' numpy results. A camera loop asks for the same few
// multi-MB outputs every frame; fresh allocations of that size are mmapped or trimmed back to
// the OS by glibc and pay ~1 page fault per 4 KiB on every call (measured: ~2.5 ms of a 3 ms
// 1280x720 postprocess). Buffers go back to the pool when their array is garbage-collected.
#include <pybind11/numpy.h>

#include <cstddef>
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

namespace edgeseg::bindings {

class BufferPool {
public:
    /// The process-wide pool. Deliberately leaked: arrays may outlive static destruction.
    static BufferPool& instance() {
        static BufferPool* pool = new BufferPool();
        return *pool;
    }

    /// A 64-byte aligned buffer of at least `bytes` bytes.
    void* acquire(size_t bytes) {
        {
            std::lock_guard<std::mutex> lock(mMutex);
            size_t best = mFree.size();
            for (size_t i = 0; i < mFree.size(); ++i) {
                size_t have = sizeOf(mFree[i]);
                // Reuse a buffer of the same size, or one at most twice as large.
                if (have >= bytes && have <= 2 * bytes + kAlign &&
                    (best == mFree.size() || have < sizeOf(mFree[best]))) {
                    best = i;
                }
            }
            if (best != mFree.size()) {
                void* p = mFree[best];
                mCachedBytes -= sizeOf(p);
                mFree.erase(mFree.begin() + static_cast<std::ptrdiff_t>(best));
                return p;
            }
        }
        size_t total = kAlign + ((bytes + kAlign - 1) / kAlign) * kAlign;
        auto* raw = static_cast<unsigned char*>(std::aligned_alloc(kAlign, total));
        if (raw == nullptr) {
            throw std::bad_alloc();
        }
        *reinterpret_cast<size_t*>(raw) = total - kAlign;
        return raw + kAlign;
    }

    /// Returns a buffer from acquire(); the oldest cached buffers are freed past the cap.
    void release(void* p) {
        std::lock_guard<std::mutex> lock(mMutex);
        mFree.push_back(p);
        mCachedBytes += sizeOf(p);
        while (!mFree.empty() && (mCachedBytes > kMaxCachedBytes || mFree.size() > kMaxBuffers)) {
            mCachedBytes -= sizeOf(mFree.front());
            std::free(static_cast<unsigned char*>(mFree.front()) - kAlign);
            mFree.erase(mFree.begin());
        }
    }

private:
    static constexpr size_t kAlign = 64;
    static constexpr size_t kMaxCachedBytes = size_t(256) << 20;
    static constexpr size_t kMaxBuffers = 32;

    static size_t sizeOf(void* p) {
        return *reinterpret_cast<size_t*>(static_cast<unsigned char*>(p) - kAlign);
    }

    std::mutex mMutex;
    std::vector<void*> mFree;
    size_t mCachedBytes = 0;
};

/// An uninitialized C-contiguous array whose memory comes from (and returns to) the pool.
inline pybind11::array pooledArray(const pybind11::dtype& dtype,
                                   const std::vector<pybind11::ssize_t>& shape) {
    size_t count = 1;
    for (auto s : shape) {
        count *= static_cast<size_t>(s);
    }
    void* p = BufferPool::instance().acquire(count * static_cast<size_t>(dtype.itemsize()));
    pybind11::capsule owner(p, [](void* q) { BufferPool::instance().release(q); });
    return pybind11::array(dtype, shape, p, owner);
}

template <typename T>
pybind11::array_t<T> pooledArray(const std::vector<pybind11::ssize_t>& shape) {
    return pybind11::array_t<T>(pooledArray(pybind11::dtype::of<T>(), shape));
}

} // namespace edgeseg::bindings
