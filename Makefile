# The entry points. Each target installs what it needs first (scripts/install-deps.sh is
# idempotent and quick when everything is present).
BUILD      ?= build
BUILD_TYPE ?= Release
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

# git that answers on a checkout another user owns (CI runs as root on one; plain git exits 128).
GIT = git -c safe.directory='*'

SOURCES = $(shell $(GIT) ls-files '*.c' '*.h' 2>/dev/null || find . -path ./build -prune -o \( -name '*.c' -o -name '*.h' \) -print)

.PHONY: all deps build test run superset bench chaos fuzz format format-check lint clean

all: build

# Apache Kafka's broker jars come from Maven Central once (pinned, checksummed; a no-op after
# the first fetch). EPP_BROKER=dev skips them: the dev broker needs no Java.
deps:
	@bash scripts/install-deps.sh
	@if [ "$(EPP_BROKER)" != dev ]; then bash scripts/kafka.sh fetch; fi

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	@cd $(BUILD) && ctest --output-on-failure --timeout 900 -LE chaos-full $(CTEST_ARGS)

run: build
	@bash scripts/run.sh $(BUILD)

# Apache Superset with the epp dashboard, beside `make run` (or starting it): docs/superset.md.
superset: build
	@bash scripts/superset.sh $(BUILD)

bench: build
	@bash bench/run.sh $(BUILD)

chaos: build
	@cd $(BUILD) && ctest --output-on-failure -L chaos-full

fuzz: deps
	@bash scripts/fuzz.sh $(or $(FUZZ_SECONDS),60)

format:
	@clang-format -i $(SOURCES)

format-check:
	@clang-format --dry-run --Werror $(SOURCES) && echo "format-check: ok"

# Static checks: shellcheck over every shell script in the repository (scripts/, bench/, .ci/,
# tests/; tracked, or new and not ignored), and clang-tidy with the checks in .clang-tidy over
# the C sources the build compiles (scripts/tidy.sh, JOBS at a time). Both must report nothing.
lint: build
	@$(GIT) ls-files -z --cached --others --exclude-standard '*.sh' .ci/run | xargs -0 shellcheck -x && echo "shellcheck: ok"
	@JOBS=$(JOBS) bash scripts/tidy.sh $(BUILD)

clean:
	rm -rf $(BUILD)
