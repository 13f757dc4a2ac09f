# ftune: GNU Make, non-recursive. `make` builds build/ftune and build/libftune.a.
#   make deps      install the Debian packages the build, tests and benchmarks need (idempotent)
#   make test      all tests, then the unit tests again under ASan+UBSan
#   make demo      the built-in demo
#   make bench     speed against the peers (PyTorch, HF tokenizers)
#   make check-reference   regenerate the reference files with PyTorch / tokenizers / Jinja2 and compare
# Switches: SAN=1 (ASan+UBSan build in build-san/), CUDA=1, MPI=1, WERROR=0.

CC       ?= gcc
SAN      ?= 0
MPI      ?= 0
WERROR   ?= 1
# MPI=1: data-parallel training over Open MPI (include/ftune/comm.h) in build-mpi/, beside build/.
BUILD    ?= $(if $(filter 1,$(SAN)),build-san,$(if $(filter 1,$(MPI)),build-mpi,build))
PREFIX   ?= /usr/local

CPPFLAGS += -Iinclude -Isrc -D_GNU_SOURCE
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -Wall -Wextra -fopenmp -MMD -MP -march=native -fno-math-errno -Wno-format-truncation
ifeq ($(WERROR),1)
CFLAGS   += -Werror
endif
ifeq ($(SAN),1)
CFLAGS   := $(filter-out -O2 -O3,$(CFLAGS)) -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
LDFLAGS  += -fsanitize=address,undefined
endif
ifeq ($(MPI),1)
MPI_CFLAGS := $(shell pkg-config --cflags ompi-c 2>/dev/null)
MPI_LIBS   := $(shell pkg-config --libs ompi-c 2>/dev/null)
ifeq ($(MPI_LIBS),)
$(error MPI=1 needs Open MPI's development files (pkg-config ompi-c): run `make deps`)
endif
CPPFLAGS += -DFT_WITH_MPI $(MPI_CFLAGS)
LDLIBS   += $(MPI_LIBS)
endif
LDLIBS   += -lsnappy -lz -lzstd -llz4 -lbrotlidec -ldnnl -lopenblas -lonig -lutf8proc -ljansson -lsqlite3 -lmicrohttpd -lpthread -lm -ldl
LDFLAGS  += -fopenmp
# OpenBLAS's OpenMP build (Debian libopenblas0-openmp), whatever the system alternative says: it shares
# libgomp's thread pool with our own parallel loops instead of spinning a second pool.
LDFLAGS  += -Wl,-rpath,/usr/lib/x86_64-linux-gnu/openblas-openmp

LIB_SRC  := $(sort $(wildcard src/*/*.c))
LIB_SRC  := $(filter-out src/cli/%,$(LIB_SRC))
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/*.c tests/*/*.c))
FUZZ_SRC := $(sort $(wildcard tests/fuzz/*.c))
TEST_SRC := $(filter-out $(FUZZ_SRC),$(TEST_SRC))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)

.PHONY: all deps test unit test-san demo bench check-reference install clean fuzz fuzz-run
all: $(BUILD)/ftune $(BUILD)/libftune.a

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "CC $<"
	@$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/tests/%.o: CPPFLAGS += -Itests
# The few-row GEMM kernel writes acc + a * b and wants it fused (src/tensor/gemm_rows.c).
$(BUILD)/obj/src/tensor/gemm_rows.o: CFLAGS += -ffp-contract=fast

# The web UI's files are assembled into the server (src/server/assets.c includes them).
WEB_ASSETS := $(wildcard src/server/web/*)
$(BUILD)/obj/src/server/assets.o: $(WEB_ASSETS)

$(BUILD)/libftune.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/ftune: $(CLI_OBJ) $(BUILD)/libftune.a
	$(CC) $(LDFLAGS) $(CLI_OBJ) $(BUILD)/libftune.a $(LDLIBS) -o $@

$(BUILD)/ftune_tests: $(TEST_OBJ) $(BUILD)/libftune.a
	$(CC) $(LDFLAGS) $(TEST_OBJ) $(BUILD)/libftune.a $(LDLIBS) -o $@

deps:
	@sh tools/deps.sh

# All tests: the full suite on the optimized build (end-to-end tests use build/ftune), then the
# unit tests again under ASan+UBSan (FT_TEST_SAN=1 lets heavy end-to-end tests take small sizes),
# then the data-parallel tests (tests/comm/, names mpi_*) on the MPI=1 build under mpirun.
test: deps
	@$(MAKE) --no-print-directory all $(BUILD)/ftune_tests
	@$(MAKE) --no-print-directory SAN=1 build-san/ftune build-san/ftune_tests
	@$(MAKE) --no-print-directory MPI=1 build-mpi/ftune build-mpi/ftune_tests
	@sh tools/run-tests.sh

unit: all $(BUILD)/ftune_tests
	FTUNE_BIN=$(BUILD)/ftune ./$(BUILD)/ftune_tests $(T)

demo: deps all
	@sh tools/demo.sh

bench: deps all
	@sh bench/run.sh

check-reference: deps all $(BUILD)/ftune_tests
	@sh tools/check-reference.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/ftune
	install -m 755 $(BUILD)/ftune $(DESTDIR)$(PREFIX)/bin/ftune
	install -m 644 $(BUILD)/libftune.a $(DESTDIR)$(PREFIX)/lib/libftune.a
	install -m 644 include/ftune/*.h $(DESTDIR)$(PREFIX)/include/ftune/

# Fuzzing: every tests/fuzz/fuzz_<name>.c is a libFuzzer target, built by clang with ASan+UBSan
# against the library sources compiled the same way into build-fuzz/. `make fuzz` builds them all;
# `make fuzz-run` runs each for FUZZ_SECONDS with its corpus in build-fuzz/corpus/<name> (seeded
# from tests/fuzz/corpus/<name>/ when that exists).
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_DIR     := build-fuzz
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.c,$(FUZZ_DIR)/fuzz_%,$(sort $(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_DIR)/obj/%.o)
FUZZ_FLAGS   := -g -O1 -std=c11 -march=native -fopenmp=libgomp -fno-omit-frame-pointer \
                -fsanitize=address,undefined -fno-sanitize-recover=undefined -Wno-unknown-pragmas

fuzz: $(FUZZ_TARGETS)

$(FUZZ_DIR)/obj/src/server/assets.o: $(WEB_ASSETS)

$(FUZZ_DIR)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "FUZZ-CC $<"
	@$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_DIR)/libftune.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_DIR)/libftune.a
	$(FUZZ_CC) $(CPPFLAGS) -Itests $(FUZZ_FLAGS) -fsanitize=fuzzer $< $(FUZZ_DIR)/libftune.a $(LDLIBS) -o $@

fuzz-run: fuzz
	@fail=0; for bin in $(FUZZ_TARGETS); do \
	  name=$${bin#$(FUZZ_DIR)/fuzz_}; mkdir -p $(FUZZ_DIR)/corpus/$$name $(FUZZ_DIR)/crashes/$$name; \
	  seeds=; if [ -d tests/fuzz/corpus/$$name ]; then seeds=tests/fuzz/corpus/$$name; fi; \
	  echo "fuzz $$name for $(FUZZ_SECONDS)s"; \
	  $$bin -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/crashes/$$name/ \
	    $(FUZZ_DIR)/corpus/$$name $$seeds || { echo "fuzz $$name FAILED (see $(FUZZ_DIR)/crashes/$$name/)"; fail=1; }; \
	done; exit $$fail

-include $(FUZZ_LIB_OBJ:.o=.d)

clean:
	rm -rf build build-san build-mpi build-fuzz

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d)
