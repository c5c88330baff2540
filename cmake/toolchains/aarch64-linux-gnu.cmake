# Cross-compiles the edgeseg core for 64-bit Arm Linux (Jetson Orin/Xavier: aarch64, NEON
# baseline) with Debian/Ubuntu's cross compiler:
#
#   apt-get install g++-aarch64-linux-gnu qemu-user
#   cmake -S . -B build/jetson-aarch64 \
#         -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake \
#         -DEDGESEG_ENABLE_CUDA=OFF -DEDGESEG_BUILD_PYTHON=OFF -DEDGESEG_BUILD_TESTS=ON
#
# The target is plain armv8-a, which is what `pip install .` on a Jetson compiles for by
# default; NEON (Advanced SIMD) is part of that baseline, so -O3 vectorizes to it. Executables
# run on the build machine through qemu-user (CMAKE_CROSSCOMPILING_EMULATOR).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(EDGESEG_AARCH64_TRIPLE aarch64-linux-gnu)
set(EDGESEG_AARCH64_SYSROOT /usr/${EDGESEG_AARCH64_TRIPLE} CACHE PATH
    "Target root holding the aarch64 libc and libstdc++ (Debian: /usr/aarch64-linux-gnu)")

find_program(CMAKE_C_COMPILER NAMES ${EDGESEG_AARCH64_TRIPLE}-gcc)
find_program(CMAKE_CXX_COMPILER NAMES ${EDGESEG_AARCH64_TRIPLE}-g++)
if(NOT CMAKE_CXX_COMPILER)
    message(FATAL_ERROR "${EDGESEG_AARCH64_TRIPLE}-g++ not found. Install the cross compiler: "
                        "apt-get install g++-aarch64-linux-gnu")
endif()

set(CMAKE_FIND_ROOT_PATH ${EDGESEG_AARCH64_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

find_program(EDGESEG_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static)
if(EDGESEG_QEMU_AARCH64)
    set(CMAKE_CROSSCOMPILING_EMULATOR ${EDGESEG_QEMU_AARCH64} -L ${EDGESEG_AARCH64_SYSROOT})
endif()
