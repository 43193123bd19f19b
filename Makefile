# The two commands a new user needs are `make run` and `make test` (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo

.PHONY: help test lint unit bench fmt

help:
	@echo "make test   - the whole test suite: fmt, clippy, unit, integration and CLI tests"
	@echo "make bench  - RSA2 sign/verify speed (rsa crate) next to 'openssl speed rsa2048'"

## The README's test command. CI runs exactly this.
test: lint unit

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit:
	$(CARGO) test --workspace --locked

fmt:
	$(CARGO) fmt --all

bench:
	$(CARGO) bench -p shared --bench rsa2
	@command -v openssl >/dev/null && openssl speed -seconds 3 rsa2048 2>/dev/null | tail -2 || echo "openssl not found"
