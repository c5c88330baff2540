"""Jetson portability check (``make jetson-check``; part of ``make test``).

Jetson devices are aarch64 (NEON, no AVX) with CUDA 12 (JetPack 6) and Orin GPUs (sm_87);
CI is x86_64 with CUDA 13. This package proves on an x86 machine, on every commit, that:

1. aarch64: the C++ core and tests/cpp/kernel_vectors.cpp cross-compile with Debian's
   ``g++-aarch64-linux-gnu`` (every core .cpp, so no x86-only intrinsic reaches an aarch64
   build) and the CPU kernels' objects contain NEON vector code.
2. parity: the aarch64 program, run under ``qemu-aarch64``, gives the same preprocess and
   postprocess outputs as the x86 build on shared random test vectors (class maps, uint8
   images, counts and float16 tensors identical; float32 within 1e-5).
3. cuda12: every ``cpp/cuda/*.cu`` compiles for sm_87 against CUDA 12.6 (JetPack 6): its
   headers, libdevice and ptxas from PyPI (cached in ``build/cuda12``) with clang's CUDA
   frontend, since PyPI has no CUDA 12 nvcc driver (see ``check_cuda12``).
4. cuda13: the machine's CUDA 13 ``nvcc`` builds the project's default architectures
   (sm_87 and sm_90), confirmed by listing the cubins in each object's fat binary.

Missing cross tools are installed from Debian's packages when ``CI`` is set; otherwise the
check fails and says what to install. Builds are cached under ``build/`` (incremental).

Run it as ``python tools/jetson_check [--only aarch64|cuda12|cuda13] [--build-dir DIR]``.
Modules: ``common`` (running commands, installing tools), ``vectors`` (the shared random test
vectors and their comparison), ``aarch64`` (cross-build, NEON and parity), ``cuda`` (the
CUDA 12 and CUDA 13 compile checks), ``__main__`` (the command line).
"""
