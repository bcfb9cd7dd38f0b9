# zeroflow build.
#
#   make            build every daemon (and the CUDA trainer where nvcc exists)
#   make test       build, then run every test (tests/run_tests.sh)
#   make clean
#
# Layout: each top-level component directory holds C sources; every file
# except main.c is a "core" object, archived in build/libzfcore.a, which
# every binary and test links, so a module is written once and used by any
# process that needs it.  The linker takes from the archive only the modules
# a binary uses, and --as-needed keeps the shared libraries it does not call
# out of it: a tokenizer worker then loads neither OpenBLAS (whose start
# creates a thread per core that spins for about 0.1 s, stealing the cores
# of the other workers) nor MPI.  File names must be unique across
# directories (checked below).  Each
# directory's main.c becomes bin/<dir>.  tests/c/test_*.c become
# bin/tests/test_*.  trainer/cuda/*.cu are compiled by nvcc into
# bin/trainer_cuda when nvcc is on PATH.

CC      ?= gcc
PKGS    := libzmq msgpack liblz4 jansson libpcre2-8 openblas
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# MPI (Open MPI) for the collectives of ZeRO ranks (lib/comm.c); from its
# pkg-config file, else from the mpicc wrapper.
MPI_CFLAGS := $(shell pkg-config --cflags ompi-c 2>/dev/null || mpicc --showme:compile 2>/dev/null)
MPI_LIBS   := $(shell pkg-config --libs ompi-c 2>/dev/null || mpicc --showme:link 2>/dev/null)
ARCH_FLAGS ?= -march=native
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE -fopenmp $(ARCH_FLAGS) \
           -I. $(addprefix -I,$(COMPONENTS)) $(PKG_CFLAGS) $(MPI_CFLAGS) -MMD -MP
LDLIBS  += $(PKG_LIBS) $(MPI_LIBS) -fopenmp -lm -lpthread -lrt
LDFLAGS += -Wl,--as-needed

COMPONENTS := lib proto tokenizerd loaderd trainer offloadd ckptd monitor
DAEMONS    := tokenizerd loaderd trainer offloadd ckptd monitor

ALL_SRCS   := $(wildcard $(addsuffix /*.c,$(COMPONENTS)))
MAIN_SRCS  := $(wildcard $(addsuffix /main.c,$(COMPONENTS)))
CORE_SRCS  := $(filter-out $(MAIN_SRCS),$(ALL_SRCS))
CORE_OBJS  := $(patsubst %.c,build/%.o,$(CORE_SRCS))
CORE_LIB   := build/libzfcore.a
DUP_NAMES  := $(shell echo $(notdir $(CORE_SRCS)) | tr ' ' '\n' | sort | uniq -d)
ifneq ($(DUP_NAMES),)
$(error source file names must be unique across components: $(DUP_NAMES))
endif

BINS       := $(addprefix bin/,$(DAEMONS))
# tests/c/test_*.c are tests the runner executes; tests/c/probe_*.c are
# helper programs the Python reference tests drive (not run on their own).
TEST_SRCS  := $(wildcard tests/c/test_*.c tests/c/probe_*.c)
TEST_BINS  := $(patsubst tests/c/%.c,bin/tests/%,$(TEST_SRCS))

# bench/bench_*.c -> bin/bench/bench_* (benchmarks print their figures; not tests)
BENCH_SRCS := $(wildcard bench/bench_*.c)
BENCH_BINS := $(patsubst bench/%.c,bin/bench/%,$(BENCH_SRCS))

NVCC       ?= $(shell command -v nvcc 2>/dev/null)
CUDA_SRCS  := $(wildcard trainer/cuda/*.cu)
ifneq ($(NVCC),)
CUDA_HOME  ?= $(patsubst %/bin/nvcc,%,$(NVCC))
# sm_80 (A100) and sm_90 (H100/H200) machine code, plus PTX for newer chips
CUDA_ARCHS ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
              -gencode arch=compute_90,code=compute_90
NVCCFLAGS  ?= -O3 -std=c++17 -MMD -MP $(CUDA_ARCHS) -I. $(addprefix -I,$(COMPONENTS)) -Xcompiler -fopenmp
CUDA_OBJS  := $(patsubst %.cu,build/%.o,$(CUDA_SRCS))
CUDA_LDLIBS := -L$(CUDA_HOME)/lib64 -lcudart -lcublasLt -lcublas -lnccl -lstdc++
BINS       += bin/trainer_cuda
# tests/gpu/*.cu: GPU tests (run on a GPU machine, see tests/README; CI only
# builds them) -> bin/gpu/<name>, linked like the CUDA trainer
GPU_TEST_SRCS := $(wildcard tests/gpu/*.cu)
BINS       += $(patsubst tests/gpu/%.cu,bin/gpu/%,$(GPU_TEST_SRCS))
# tests/gpu/*.c: GPU probes in C that also need the core (HF loading) ->
# bin/gpu/<name>, linked with the core and the CUDA objects
GPU_C_SRCS := $(wildcard tests/gpu/*.c)
GPU_C_OBJS := $(patsubst %.c,build/%.o,$(GPU_C_SRCS))
GPU_C_BINS := $(patsubst tests/gpu/%.c,bin/gpu/%,$(GPU_C_SRCS))
BINS       += $(GPU_C_BINS)
endif

.PHONY: all build deps test clean
# Dependencies are checked (and installed when root) before the build proper,
# in a separate make invocation so pkg-config sees freshly installed packages.
all: deps
	@$(MAKE) --no-print-directory build

build: $(BINS) $(TEST_BINS) $(BENCH_BINS) build/core_link_check

deps:
	@scripts/install_deps.sh --ensure

build/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(CORE_LIB): $(CORE_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

# Every core module linked at once, used or not: a reference no binary pulls
# in would otherwise go unnoticed until some binary does.
build/core_link_check: $(CORE_LIB)
	@printf 'int main(void) { return 0; }\n' > $@.c
	$(CC) $(CFLAGS) $(LDFLAGS) $@.c -o $@ -Wl,--whole-archive $(CORE_LIB) -Wl,--no-whole-archive $(LDLIBS)

bin/%: build/%/main.o $(CORE_LIB)
	@mkdir -p bin
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)

bin/tests/%: build/tests/c/%.o $(CORE_LIB)
	@mkdir -p bin/tests
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)

bin/bench/%: build/bench/%.o $(CORE_LIB)
	@mkdir -p bin/bench
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)

ifneq ($(NVCC),)
build/trainer/cuda/%.o: trainer/cuda/%.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

build/trainer/main_cuda.o: trainer/main.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DZF_WITH_CUDA -I$(CUDA_HOME)/include -c $< -o $@

build/tests/gpu/%.o: tests/gpu/%.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -Itrainer/cuda -c $< -o $@

bin/gpu/%: build/tests/gpu/%.o $(CUDA_OBJS) $(CORE_LIB)
	@mkdir -p bin/gpu
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS) $(CUDA_LDLIBS)

$(GPU_C_OBJS): build/tests/gpu/%.o: tests/gpu/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DZF_WITH_CUDA -I$(CUDA_HOME)/include -c $< -o $@

$(GPU_C_BINS): bin/gpu/%: build/tests/gpu/%.o $(CUDA_OBJS) $(CORE_LIB)
	@mkdir -p bin/gpu
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS) $(CUDA_LDLIBS)

bin/trainer_cuda: build/trainer/main_cuda.o $(CUDA_OBJS) $(CORE_LIB)
	@mkdir -p bin
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS) $(CUDA_LDLIBS)
endif

test: all
	@scripts/install_deps.sh --ensure --test
	@tests/run_tests.sh

clean:
	rm -rf build bin

-include $(shell find build -name '*.d' 2>/dev/null)
