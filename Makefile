# The two commands a new user needs are `make run` and `make test` (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo

.PHONY: help test check lint unit template stack bench fmt moto run demo clock sweep reconcile reconcile-demo risk-demo chaos outage

help:
	@echo "make run    - run the gateway locally: AWS stand-in, Alipay simulator, the functions (Ctrl-C stops); ALIPAY_MODE=certificate for certificate mode"
	@echo "make demo   - with make run going: create, pay, notify, refund in part and in full; USD, JPY and IDR through Antom; then a subscription signed and three months charged on the test clock"
	@echo "make clock ADVANCE=30d - with make run going: move the shared test clock forward (d, h or m)"
	@echo "make sweep  - with make run going: run the sweeper once (finish pending refunds, end expired payments)"
	@echo "make reconcile - with make run going: reconcile today's simulated day with the simulator's bill (DATE=yyyy-MM-dd, CHANNEL=secondary or antom)"
	@echo "make reconcile-demo - with make run going: one discrepancy of each kind in the Antom channel's reports, found"
	@echo "make risk-demo - with make run going: one Alipay buyer pays for four customers; the streaming signal blocks the next create, timed"
	@echo "make outage - with make run going: an Alipay outage on the primary channel, timed: detection, fail-fast, switching, recovery, breaker cost"
	@echo "make chaos  - the long chaos run: 10,000 operations with faults at every boundary, invariants checked"
	@echo "make check  - the quick loop: fmt, clippy and the tests that need nothing installed (no stand-in, no SDK oracles)"
	@echo "make test   - the whole suite: fmt, clippy, unit, integration (DynamoDB/KMS on moto), end-to-end, contract, CLI, template checks, and on make run's stack: schemathesis, a browser, start/stop"
	@echo "make moto   - start the local AWS stand-in and print how to point the SDK at it"
	@echo "make bench  - RSA2 speed next to 'openssl speed rsa2048'; store/KMS latencies; CPU per request; cold start and memory vs a python-alipay-sdk peer; binary sizes; reconciling a generated day"

## The README's test command. CI runs exactly this.
test: lint unit template stack
	@scripts/test-summary.sh .local/test-output.log

# On make run's own stack (own ports, .local/stack-test): schemathesis from openapi.yaml, a buyer
# in Chromium (page, wap, QR), and make run's stops (Ctrl-C, kill -9, a failed start).
stack:
	scripts/stack-tests.sh

## The quick loop: fmt, clippy, and every test that needs nothing installed (no AWS stand-in, no
## SDK oracles, no browser). The integration tests need the stand-in: see docs/testing.md.
check: lint
	$(CARGO) test --locked -p money -p alipay -p antom -p domain -p store -p gateway -p alipay-sim -p local-stack
	$(CARGO) test --locked -p gateway-tests --lib --test template

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# Unit, property, vector, differential (against Alipay's Node.js SDK and python-alipay-sdk, which
# scripts/sdk-oracles.sh installs), CLI and integration tests; the integration tests run against the
# local AWS stand-in (moto), which scripts/with-moto.sh installs, starts and stops. Then the
# end-to-end suites a second time in certificate mode.
unit:
	@mkdir -p .local
	scripts/sdk-oracles.sh
	set -o pipefail; scripts/with-moto.sh $(CARGO) test --workspace --locked 2>&1 | tee .local/test-output.log
	set -o pipefail; GATEWAY_TEST_ALIPAY_MODE=certificate scripts/with-moto.sh $(CARGO) test --workspace --locked --test it -- $(CERT_MODE_MODULES) 2>&1 | tee -a .local/test-output.log
	set -o pipefail; GATEWAY_TEST_ALIPAY_MODE=certificate scripts/with-moto.sh $(CARGO) test --workspace --locked --test logs 2>&1 | tee -a .local/test-output.log

# The end-to-end modules of the integration tests again with the application in certificate mode
# (公钥证书), and the logs test. --workspace keeps the features (and so the build) of the first
# pass: -p alone rebuilds half the graph.
CERT_MODE_MODULES := e2e:: lifecycle:: breaker:: risk:: outbox:: reconcile:: events:: contract::

# cfn-lint, sam validate --lint and sam build (offline; see scripts/template-checks.sh).
template:
	scripts/template-checks.sh
	scripts/venv.sh .venv scripts/python/moto-requirements.txt
	.venv/bin/openapi-spec-validator openapi.yaml

fmt:
	$(CARGO) fmt --all

# Each bench prints a table: RSA2 speed (rsa crate and aws-lc-rs); store and KMS latencies on
# moto; CPU per request of the handlers with AWS answered from recordings; cold start and peak
# RSS of the release binaries next to python-alipay-sdk + boto3 under awslambdaric, and the
# binaries' sizes; a reconciliation of a generated day.
bench:
	$(CARGO) bench --locked -p gateway --bench rsa2
	scripts/with-moto.sh $(CARGO) bench --locked -p gateway-tests --bench store
	scripts/with-moto.sh $(CARGO) bench --locked -p gateway-tests --bench cpu_per_request
	$(CARGO) build --release --locked -p alipay-cli -p create-payment -p notify -p refund -p subscriptions -p sweeper -p reconcile -p publisher -p risk-signals
	scripts/venv.sh .venv-bench scripts/python/bench-requirements.txt
	scripts/with-moto.sh $(CARGO) bench --locked -p gateway-tests --bench cold_start
	scripts/with-moto.sh $(CARGO) bench --locked -p gateway-tests --bench reconcile
	scripts/with-moto.sh $(CARGO) bench --locked -p gateway-tests --bench antom_reconcile
	@command -v openssl >/dev/null && openssl speed -seconds 3 rsa2048 2>/dev/null | tail -2 || echo "openssl not found"

moto:
	@url=$$(scripts/moto.sh start) && echo "export AWS_ENDPOINT_URL=$$url AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1"

## The README's first command: the whole gateway on this machine (Ctrl-C stops it).
run:
	scripts/run-local.sh

## The long chaos run (make test runs a bounded one): 10,000 operations, a fresh seed unless
## CHAOS_SEED is given; prints the operations, the faults by boundary and the violations.
chaos:
	scripts/with-moto.sh env CHAOS_OPS=$${CHAOS_OPS:-10000} CHAOS_SEED=$${CHAOS_SEED:-$$(date +%s)} \
	  $(CARGO) test --locked -p gateway-tests --test chaos -- --nocapture

## With `make run` going: one sweeper run, with make run's environment.
sweep:
	@test -f .local/sweeper.env || { echo "start make run first" >&2; exit 1; }
	set -a; . .local/sweeper.env; set +a; \
	  if [ -z "$${ALIPAY_CERT:-}" ]; then \
	    export ALIPAY_PUBLIC_KEY="$$(cat tests/fixtures/keys/alipay_public_key.pem)" \
	      SECONDARY_ALIPAY_PUBLIC_KEY="$$(cat tests/fixtures/keys/alipay2_public_key.pem)"; \
	  fi; $(CARGO) run --quiet --locked -p local-stack --bin local-sweeper -- --once

## With `make run` going: reconcile a day (DATE, default today in China time) through the
## reconcile function, as its daily schedule does for yesterday.
reconcile:
	@.venv/bin/python scripts/reconcile-local.py

## With `make run` going: one discrepancy of each kind between the gateway and the simulated
## Antom's reports (on a day three days back at "Antom"), found by the reconcile function.
reconcile-demo:
	$(CARGO) run --quiet -p local-stack --bin local-reconcile-demo

## With `make run` going: a streaming risk signal (one buyer, many customers) blocking the next
## create, timed.
risk-demo:
	$(CARGO) run --quiet -p local-stack --bin local-risk-demo

## With `make run` going: an outage of the primary channel's Alipay application, measured.
outage:
	$(CARGO) run --quiet -p local-stack --bin local-outage

## With `make run` going in another terminal: the whole lifecycle, step by step.
demo:
	$(CARGO) run --quiet -p local-stack --bin local-demo

## With `make run` going: the shared test clock (.local/test-clock, ms ahead of the machine)
## moved forward by ADVANCE (30d, 12h, 90m); every process reads it (debug builds only).
clock:
	@test -f .local/test-clock || { echo "start make run first" >&2; exit 1; }
	@python3 -c 'import re,sys; m=re.fullmatch(r"(\d+)([dhm])", sys.argv[1]) or sys.exit("ADVANCE must be like 30d, 12h or 90m"); \
	  ms=int(m[1])*{"d":86400000,"h":3600000,"m":60000}[m[2]]; f=".local/test-clock"; \
	  o=int(open(f).read().strip() or 0)+ms; open(f,"w").write(str(o)); print(f"test clock: {o/86400000:.2f} days ahead")' "$${ADVANCE:-1d}"
