# Thin wrapper: the two commands of the README, and a few more.
#   make run    install what is missing, build, start patd on ./data
#   make test   install what is missing, build, run every test
SHELL := /bin/bash
BUILD ?= build
JOBS  ?= $(shell nproc)
ARGS  ?=

FUZZ_SECONDS ?= 60

.PHONY: all deps build run test test-asan fuzz bench bench-cluster clean format format-check image test-image

all: build

deps:
	@scripts/install-deps.sh

# Quiet builds: no per-file progress lines and no "Entering directory"
# (make test printed 229 lines, 96 of them that); a compiler error and a
# failing test still print in full.
QUIET := -DCMAKE_RULE_MESSAGES=OFF
NOPRINT := -- --no-print-directory -s

$(BUILD)/Makefile: CMakeLists.txt
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(QUIET) >/dev/null

build: deps $(BUILD)/Makefile
	@cmake --build $(BUILD) -j $(JOBS) $(NOPRINT)

# make run builds what it runs (patd) and what the walkthrough runs next to
# it (patctl), not every test binary.
run: deps $(BUILD)/Makefile
	@cmake --build $(BUILD) -j $(JOBS) --target patd patctl $(NOPRINT)
	@echo "patd: framed protobuf on 127.0.0.1:7700, HTTP (gateways, REST API, /metrics) on 127.0.0.1:7780; data in ./data"
	@echo "Access Tokens page: http://127.0.0.1:7780/ui/ - sign in with a one-time link, from another shell:"
	@echo "  $(BUILD)/patctl --platform-key-file data/platform.key users upsert alice --role admin"
	@echo "  $(BUILD)/patctl --platform-key-file data/platform.key ui-link --as alice"
	$(BUILD)/patd $(ARGS)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DPATD_SANITIZE=ON $(QUIET) >/dev/null
	@cmake --build build-asan -j $(JOBS) $(NOPRINT)
	@cd build-asan && ctest --output-on-failure -j $(JOBS)

# Each fuzz target runs FUZZ_SECONDS from the committed seed corpus (copied,
# so the repository's corpus is not rewritten). A crash fails the target.
fuzz: deps
	@CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DPATD_FUZZ=ON $(QUIET) >/dev/null
	@cmake --build build-fuzz -j $(JOBS) --target fuzz_frame fuzz_dispatch fuzz_token fuzz_http fuzz_json fuzz_record $(NOPRINT)
	@set -e; for f in frame dispatch token http json record; do \
	  d=$$(mktemp -d); cp tests/fuzz/corpus/$$f/* $$d/; \
	  echo "fuzz_$$f: $(FUZZ_SECONDS) s"; \
	  build-fuzz/tests/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	    -print_final_stats=1 $$d 2>&1 | grep -E "stat::number_of_executed_units|Done|ERROR|SUMMARY" ; \
	  test $${PIPESTATUS[0]} -eq 0; rm -rf $$d; \
	done

bench:
	bench/run.sh

# Three nodes on one PostgreSQL against one (docs/cluster.md):
# bench/results/cluster.md.
bench-cluster:
	bench/cluster.sh

# The container image (docker where an engine answers, else podman; the
# Debian base images are made locally where no registry is reachable).
image:
	@scripts/image.sh

# Builds the image in a private store, runs and checks it, removes it all.
test-image: build
	@BUILD=$(BUILD) tests/image/test_image.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

# CI: fails, naming the files, if any source is not as .clang-format wants.
format-check: deps
	@clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h') 2>&1 | grep -oE '^[^ :]+\.[ch]:[0-9]+:' | cut -d: -f1 | sort -u | sed 's/$$/: not clang-formatted (make format)/' ; \
	  clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h') >/dev/null 2>&1

clean:
	rm -rf $(BUILD) build-asan build-fuzz build-release build-image
