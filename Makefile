# edgeseg: two commands do all set-up on a fresh machine.
#   make demo   - the whole chain on synthetic data (bootstraps .venv, builds the core)
#   make test   - lint + docs build + the whole test suite + the Jetson portability check
# Both are idempotent: a second run reuses .venv and rebuilds only what changed.

PYTHON ?= python3
VENV   ?= .venv
VPY    := $(VENV)/bin/python
PIP    := $(VPY) -m pip --disable-pip-version-check
# Machines without an NVIDIA GPU get the CPU torch wheel, pinned (an unpinned torch would
# pull a multi-GB CUDA build).
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
TORCH_SPEC ?= $(if $(HAS_GPU),torch,torch==2.13.0)
# Sources that need a rebuild of the native core when they change.
CORE_SRCS := CMakeLists.txt pyproject.toml $(shell find cpp cmake -type f 2>/dev/null)
DEMO_OUT ?= demo_out
PYTEST_ARGS ?=

.PHONY: all demo test lint pytest jetson-check jetson-deps bench build system-deps sanitize gpu-check \
	docs docs-build wheel clean distclean help

all: test

help:
	@echo "make demo          synthetic dataset -> training -> ONNX -> INT8 -> camera loop with rules;"
	@echo "                   open demo_out/report.html"
	@echo "make test          ruff, clang-format, mkdocs build --strict, pytest, jetson-check (what CI runs)"
	@echo "make lint          ruff (Python) and clang-format --dry-run --Werror (C++/CUDA)"
	@echo "make docs          serve the documentation site at http://127.0.0.1:8000/"
	@echo "make wheel         manylinux x86_64 wheel (auditwheel) and an sdist into dist/"
	@echo "make jetson-check  aarch64 cross-build + qemu parity, CUDA 12 (sm_87) and CUDA 13 compile checks"
	@echo "make bench         benchmark the fused kernels against numpy+OpenCV and torch"
	@echo "make sanitize      build the core with ASan+UBSan and run the kernel tests under it"
	@echo "make gpu-check     on a GPU machine: CUDA build for its GPU, GPU tests, compute-sanitizer, GPU bench"
	@echo "make system-deps   install the Debian packages the tests use (root or sudo)"
	@echo "make clean         remove build outputs (keeps .venv)"

$(VPY):
	$(PYTHON) -m venv $(VENV)

# Third-party dependencies; re-run only when pyproject.toml changes.
$(VENV)/.deps-stamp: pyproject.toml | $(VPY)
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q "scikit-build-core>=0.10" "pybind11>=2.12" ninja cmake
	@touch $@

# The package itself (editable: Python edits are live) with its dev extra; the native core is
# rebuilt incrementally in build/ when a C++/CUDA/CMake source changes.
$(VENV)/.core-stamp: $(VENV)/.deps-stamp $(CORE_SRCS)
	$(PIP) install -q --no-build-isolation -e ".[dev,docs]"
	@touch $@

build: $(VENV)/.core-stamp

# Debian packages for real services in tests and the demo (tools/apt-packages.txt).
system-deps:
	@tools/system_deps.sh

# C++/CUDA formatting (.clang-format) is checked with Debian's clang-format (tools/apt-packages.txt,
# installed by system-deps where it can be): a developer machine without it gets a warning, CI
# (CI set) fails.
CLANG_FORMAT ?= clang-format
CPP_FORMAT_SRCS = $(shell find cpp tests/cpp -type f \( -name '*.h' -o -name '*.cpp' -o -name '*.cu' \
	-o -name '*.cuh' -o -name '*.inc' \) | sort)

lint: build system-deps
	$(VPY) -m ruff check python tests tools
	$(VPY) -m ruff format --check python tests tools
	$(VENV)/bin/lint-imports
	@if command -v $(CLANG_FORMAT) >/dev/null 2>&1; then \
		$(CLANG_FORMAT) --dry-run --Werror $(CPP_FORMAT_SRCS) && \
		echo "clang-format: $(words $(CPP_FORMAT_SRCS)) C++/CUDA files formatted"; \
	elif [ -n "$$CI" ]; then \
		echo "lint: $(CLANG_FORMAT) not found; install it: apt-get install clang-format" >&2; exit 1; \
	else \
		echo "lint: WARNING: $(CLANG_FORMAT) not found, C++/CUDA formatting NOT checked" \
			"(apt-get install clang-format)"; \
	fi

pytest: build system-deps
	$(VPY) -m pytest $(PYTEST_ARGS)

# Jetson portability (README, "Jetson"): aarch64 cross-build of the core run under qemu against
# the x86 build, CUDA 12.6 / sm_87 and CUDA 13 / sm_87+sm_90 compile checks. Builds are cached
# in build/jetson-*, build/cuda12.
jetson-check: build jetson-deps
	$(VPY) tools/jetson_check

# The cross tools jetson-check needs (tools/apt-packages-jetson.txt): installed as root or with
# sudo; otherwise the one command to run is printed and the target fails.
jetson-deps:
	@tools/system_deps.sh tools/apt-packages-jetson.txt --required

# The documentation site: `make docs` serves it with live reload, `make docs-build` is the
# strict build `make test` runs (warnings, broken links and missing docstrings fail it).
docs: build
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

docs-build: build
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir build/site

# Wheels and sdist into dist/: the x86_64 wheel (reusing the core built in build/) repaired
# to a manylinux tag by auditwheel, the sdist, and a wheel built from that sdist.
wheel: build
	$(VPY) tools/build_wheel.py --sdist

test: lint docs-build pytest jetson-check

demo: build system-deps
	$(VPY) -m edgeseg demo --out $(DEMO_OUT)

bench: build
	$(VPY) tools/bench_kernels.py

# Accuracy suite (docs/benchmarks/accuracy.md): four datasets built from Debian packages'
# photographs, the default recipe vs a plain UNet at equal time. BENCH_ACCURACY_ARGS, e.g.
# "--minutes 15 --datasets cutouts".
.PHONY: bench-accuracy
bench-accuracy: build system-deps
	$(VPY) tools/bench_accuracy.py $(BENCH_ACCURACY_ARGS)

# ASan+UBSan build of the core in its own venv (system packages of .venv reused via a
# .pth file), kernel tests run with the sanitizer runtime preloaded.
ASAN_VENV := build/asan-venv
sanitize: build
	tools/sanitize.sh "$(VPY)" "$(ASAN_VENV)"

# The GPU check in one command (tools/gpu_check.sh): a CUDA build of the core for the GPU found,
# pytest -m gpu, the CUDA kernel tests under compute-sanitizer and tools/bench_gpu.py.
gpu-check:
	tools/gpu_check.sh

clean:
	rm -rf build dist $(DEMO_OUT) $(VENV)/.core-stamp

distclean: clean
	rm -rf $(VENV)
