# The two commands of the README, and a few helpers.
.PHONY: up down test lint fmt bench manifests image compose-up chaos

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

chaos:      ## the chaos suite: faults while traffic runs, and the checks that nothing acknowledged is lost
	@bash scripts/test.d/47-chaos.sh

manifests:  ## validate deploy/, k8s/ and docker-compose.yml (no Docker or cluster needed)
	@bash scripts/test.d/15-manifests.sh

image:      ## the container image of the three services (needs Docker)
	docker build -f deploy/Dockerfile -t chat:local .

compose-up: ## the whole stack in Docker, behind nginx on :8080 (needs Docker)
	docker compose up --build

bench:      ## benchmarks side by side with the Node baseline (bench/run.sh, ~5 min; figures in docs/BENCHMARKS.md)
	@bash bench/run.sh
