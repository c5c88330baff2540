#include "edgeseg/parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace edgeseg {
namespace {

/// How long an idle worker polls for the next job before it sleeps. Waking a sleeping thread
/// costs 80-300 us on small VMs, more than a whole 1080p preprocess; a camera loop calls the
/// kernels back to back (preprocess, postprocess), so a short poll hides that latency.
/// EDGESEG_SPIN_US overrides it (0 = always sleep).
std::chrono::microseconds spinDuration() {
    const char* env = std::getenv("EDGESEG_SPIN_US");
    long us = env != nullptr ? std::strtol(env, nullptr, 10) : 300;
    return std::chrono::microseconds(std::clamp(us, 0L, 100000L));
}

inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield" ::: "memory");
#endif
}

int defaultThreads() {
    unsigned hc = std::thread::hardware_concurrency();
    return hc == 0 ? 1 : static_cast<int>(hc);
}

/// Workers sleep on a condition variable and wake for each job generation. One job runs at a
/// time (a mutex serializes callers), which matches how the kernels are used: one frame's
/// kernel fans out across all cores.
class ThreadPool {
public:
    explicit ThreadPool(int threads) : mSpin(spinDuration()) { resize(threads); }
    ~ThreadPool() { stopWorkers(); }

    int size() const { return mSize; }

    void resize(int threads) {
        std::lock_guard<std::mutex> callLock(mCallMutex);
        stopWorkers();
        mSize = std::max(1, threads);
        mStop = false;
        for (int i = 1; i < mSize; ++i) {
            mWorkers.emplace_back([this, i] { workerLoop(i); });
        }
    }

    void run(int chunks, const std::function<void(int)>& task) {
        std::lock_guard<std::mutex> callLock(mCallMutex);
        if (chunks <= 1 || mWorkers.empty()) {
            for (int i = 0; i < chunks; ++i) {
                task(i);
            }
            return;
        }
        {
            std::lock_guard<std::mutex> lock(mMutex);
            mTask = &task;
            mChunks = chunks;
            mNext = 0;
            mPending = chunks;
            mError = nullptr;
            mGeneration.fetch_add(1, std::memory_order_release);
        }
        mWake.notify_all();
        drain();
        std::unique_lock<std::mutex> lock(mMutex);
        mDone.wait(lock, [this] { return mPending == 0; });
        mTask = nullptr;
        if (mError) {
            std::rethrow_exception(mError);
        }
    }

private:
    void drain() {
        for (;;) {
            int chunk;
            {
                std::lock_guard<std::mutex> lock(mMutex);
                if (mTask == nullptr || mNext >= mChunks) {
                    return;
                }
                chunk = mNext++;
            }
            std::exception_ptr error;
            try {
                (*mTask)(chunk);
            } catch (...) {
                error = std::current_exception();
            }
            std::lock_guard<std::mutex> lock(mMutex);
            if (error && !mError) {
                mError = error;
            }
            if (--mPending == 0) {
                mDone.notify_all();
            }
        }
    }

    void workerLoop(int /*index*/) {
        unsigned long seen = mGeneration.load(std::memory_order_acquire);
        for (;;) {
            auto spinEnd = std::chrono::steady_clock::now() + mSpin;
            while (mGeneration.load(std::memory_order_acquire) == seen &&
                   !mStop.load(std::memory_order_relaxed) &&
                   std::chrono::steady_clock::now() < spinEnd) {
                cpuRelax();
            }
            {
                std::unique_lock<std::mutex> lock(mMutex);
                mWake.wait(lock, [&] { return mStop || mGeneration != seen; });
                if (mStop) {
                    return;
                }
                seen = mGeneration.load(std::memory_order_relaxed);
            }
            drain();
        }
    }

    void stopWorkers() {
        {
            std::lock_guard<std::mutex> lock(mMutex);
            mStop = true;
        }
        mWake.notify_all();
        for (auto& t : mWorkers) {
            t.join();
        }
        mWorkers.clear();
    }

    std::mutex mCallMutex;
    std::mutex mMutex;
    std::condition_variable mWake;
    std::condition_variable mDone;
    std::vector<std::thread> mWorkers;
    const std::function<void(int)>* mTask = nullptr;
    std::exception_ptr mError;
    std::atomic<unsigned long> mGeneration{0};
    int mChunks = 0;
    int mNext = 0;
    int mPending = 0;
    int mSize = 1;
    std::atomic<bool> mStop{false};
    std::chrono::microseconds mSpin;
};

ThreadPool& pool() {
    static ThreadPool instance(defaultThreads());
    return instance;
}

} // namespace

int numThreads() { return pool().size(); }

void setNumThreads(int n) { pool().resize(n); }

void parallelFor(int n, int minChunk, const std::function<void(int, int)>& fn) {
    if (n <= 0) {
        return;
    }
    minChunk = std::max(1, minChunk);
    int chunks = std::min(numThreads(), std::max(1, n / minChunk));
    if (chunks <= 1) {
        fn(0, n);
        return;
    }
    pool().run(chunks, [&](int i) {
        int begin = static_cast<int>(static_cast<long long>(n) * i / chunks);
        int end = static_cast<int>(static_cast<long long>(n) * (i + 1) / chunks);
        if (begin < end) {
            fn(begin, end);
        }
    });
}

} // namespace edgeseg
