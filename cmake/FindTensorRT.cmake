# FindTensorRT
# ------------
# Finds NVIDIA TensorRT: the runtime headers (NvInferRuntime.h + NvInferVersion.h; the runtime
# needs no builder header NvInfer.h), libnvinfer and, when present, libnvonnxparser.
#
# Hints: TensorRT_ROOT (CMake or environment variable) pointing at an SDK folder with include/
# and lib/ (a TensorRT tarball); otherwise the system dirs, including the multiarch dirs JetPack
# installs to (/usr/include/aarch64-linux-gnu, /usr/lib/aarch64-linux-gnu) and their x86_64 twins.
#
# Result variables: TensorRT_FOUND, TensorRT_VERSION (from NvInferVersion.h),
# TensorRT_VERSION_MAJOR/MINOR/PATCH, TensorRT_INCLUDE_DIR, TensorRT_LIBRARY,
# TensorRT_ONNXPARSER_LIBRARY.
# Imported targets: TensorRT::nvinfer, TensorRT::onnxparser (when found).

set(_trt_hints)
foreach(_root IN ITEMS "${TensorRT_ROOT}" "$ENV{TensorRT_ROOT}" "$ENV{TENSORRT_ROOT}")
    if(_root)
        list(APPEND _trt_hints "${_root}")
    endif()
endforeach()
if(CMAKE_LIBRARY_ARCHITECTURE)
    set(_trt_multiarch ${CMAKE_LIBRARY_ARCHITECTURE})
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
    set(_trt_multiarch aarch64-linux-gnu)
else()
    set(_trt_multiarch x86_64-linux-gnu)
endif()

find_path(TensorRT_INCLUDE_DIR NvInferRuntime.h
    HINTS ${_trt_hints}
    PATH_SUFFIXES include include/${_trt_multiarch}
    PATHS /usr /usr/local /usr/local/tensorrt /opt/tensorrt
          /usr/include/${_trt_multiarch} /usr/local/cuda/include)
find_library(TensorRT_LIBRARY nvinfer
    HINTS ${_trt_hints}
    PATH_SUFFIXES lib lib64 lib/${_trt_multiarch}
    PATHS /usr /usr/local /usr/local/tensorrt /opt/tensorrt
          /usr/lib/${_trt_multiarch} /usr/local/cuda/lib64)
find_library(TensorRT_ONNXPARSER_LIBRARY nvonnxparser
    HINTS ${_trt_hints}
    PATH_SUFFIXES lib lib64 lib/${_trt_multiarch}
    PATHS /usr /usr/local /usr/local/tensorrt /opt/tensorrt
          /usr/lib/${_trt_multiarch} /usr/local/cuda/lib64)

set(TensorRT_VERSION "")
if(TensorRT_INCLUDE_DIR)
    # NvInferVersion.h: TensorRT 8.x and early 10.x (10.0, 10.7 checked) define
    # NV_TENSORRT_MAJOR 10 etc. directly; later 10.x (10.14 checked) define TRT_MAJOR_ENTERPRISE 10
    # and NV_TENSORRT_MAJOR TRT_MAJOR_ENTERPRISE. Take the first numeric definition of each part.
    set(_trt_header "${TensorRT_INCLUDE_DIR}/NvInferVersion.h")
    if(EXISTS "${_trt_header}")
        file(STRINGS "${_trt_header}" _trt_lines REGEX "^[ \t]*#[ \t]*define[ \t]+(NV_TENSORRT|TRT)_(MAJOR|MINOR|PATCH)(_ENTERPRISE)?[ \t]")
        foreach(_part MAJOR MINOR PATCH)
            set(TensorRT_VERSION_${_part} "")
            foreach(_line IN LISTS _trt_lines)
                if(_line MATCHES "define[ \t]+(NV_TENSORRT|TRT)_${_part}(_ENTERPRISE)?[ \t]+([0-9]+)")
                    set(TensorRT_VERSION_${_part} "${CMAKE_MATCH_3}")
                    break()
                endif()
            endforeach()
        endforeach()
        if(NOT TensorRT_VERSION_MAJOR STREQUAL "" AND NOT TensorRT_VERSION_MINOR STREQUAL ""
           AND NOT TensorRT_VERSION_PATCH STREQUAL "")
            set(TensorRT_VERSION "${TensorRT_VERSION_MAJOR}.${TensorRT_VERSION_MINOR}.${TensorRT_VERSION_PATCH}")
        endif()
    endif()
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(TensorRT
    REQUIRED_VARS TensorRT_LIBRARY TensorRT_INCLUDE_DIR TensorRT_VERSION
    VERSION_VAR TensorRT_VERSION)

if(TensorRT_FOUND AND NOT TARGET TensorRT::nvinfer)
    # Imported include dirs are SYSTEM for consumers: TensorRT's own deprecation warnings stay out
    # of -Wall -Wextra builds. The headers include <cuda_runtime_api.h>; consumers link CUDA.
    add_library(TensorRT::nvinfer UNKNOWN IMPORTED)
    set_target_properties(TensorRT::nvinfer PROPERTIES
        IMPORTED_LOCATION "${TensorRT_LIBRARY}"
        INTERFACE_INCLUDE_DIRECTORIES "${TensorRT_INCLUDE_DIR}")
    if(TensorRT_ONNXPARSER_LIBRARY)
        add_library(TensorRT::onnxparser UNKNOWN IMPORTED)
        set_target_properties(TensorRT::onnxparser PROPERTIES
            IMPORTED_LOCATION "${TensorRT_ONNXPARSER_LIBRARY}"
            INTERFACE_LINK_LIBRARIES TensorRT::nvinfer)
    endif()
endif()
mark_as_advanced(TensorRT_INCLUDE_DIR TensorRT_LIBRARY TensorRT_ONNXPARSER_LIBRARY)
