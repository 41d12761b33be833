# minerpool — `make demo` runs it locally, `make test` runs every check and test.
# Both set up what they need on a fresh machine (test servers are cached under ~/.cache/minerpool).

CARGO ?= cargo

.PHONY: test demo build lint fmt-check unit-and-integration test-deps crds

test: test-deps fmt-check lint unit-and-integration

test-deps:
	scripts/mongo-test-server.sh install
	@if ! $(CARGO) nextest --version >/dev/null 2>&1; then $(CARGO) install --locked cargo-nextest; fi

fmt-check:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit-and-integration:
	scripts/with-test-servers.sh $(CARGO) nextest run --workspace --no-fail-fast

build:
	$(CARGO) build --workspace --release

demo:
	scripts/demo.sh
