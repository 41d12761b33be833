# minerpool — `make demo` runs it locally, `make test` runs every check and test.
# Both set up what they need on a fresh machine (test servers are cached under ~/.cache/minerpool).

CARGO ?= cargo

.PHONY: test demo build lint fmt-check unit-and-integration test-deps crds images cluster-test

# Its compiles, each once: clippy's check of every target; the test run's dev build of every
# target, whose binaries the cluster test's host tools reuse (scripts/cluster-servers.sh); and the
# images' release build of the node, jobs and operator (scripts/images.sh).
test: test-deps fmt-check lint unit-and-integration cluster-test

test-deps:
	scripts/mongo-test-server.sh install
	scripts/python-validator.sh install
	scripts/schemathesis.sh install
	scripts/kube-test-env.sh install
	scripts/kube-cluster.sh install
	scripts/debian-tool.sh chromedriver chromium chromium-driver
	@if ! $(CARGO) nextest --version >/dev/null 2>&1; then $(CARGO) install --locked cargo-nextest; fi

fmt-check:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Every test, then the Helm chart checks, against one set of servers; both run even if one fails.
unit-and-integration:
	MINERPOOL_TEST_KUBE=1 scripts/with-test-servers.sh sh -c '\
		$(CARGO) nextest run --workspace --no-fail-fast; tests=$$?; \
		scripts/chart-test.sh "$$MINERPOOL_TEST_KUBE_DIR"; charts=$$?; \
		[ $$tests -eq 0 ] && [ $$charts -eq 0 ]'

# The README's Kubernetes section, run as written on a one-node cluster with pods (needs root).
cluster-test:
	scripts/cluster-test.sh

# The node, jobs and operator images, built without a registry (IMAGE_TAG, default dev).
images:
	scripts/images.sh $(IMAGE_TAG)

build:
	$(CARGO) build --workspace --release

demo:
	scripts/demo.sh
