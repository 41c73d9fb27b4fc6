# The two commands of the README, and a few helpers.
.PHONY: up down test lint fmt bench

up:    ## build and start the whole stack locally, print where to go
	@scripts/up.sh

down:  ## stop what `make up` started
	@scripts/down.sh

test:  ## every test: formatting, clippy, the Rust workspace, then scripts/test.d/*
	@scripts/test.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

fmt:
	cargo fmt --all
