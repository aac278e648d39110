# poolsafe — every target is run by .ci/run or make test somewhere.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
STACK := scripts/pgstack.sh
# Load the local stack's URLs into the environment of one recipe line.
WITH_STACK := eval "$$(bash $(STACK) env)" &&

.PHONY: all setup stack-up stack-down stack-status stack-check test unit conformance faults bench demo examples lint fuzz peer

all: lint test

## setup: install PostgreSQL and PgBouncer (apt-get, as root) and download Go modules
setup:
	bash $(STACK) install
	$(GO) mod download

## stack-up / stack-down / stack-status: the throwaway PostgreSQL + PgBouncer on 127.0.0.1
stack-up:
	bash $(STACK) up >/dev/null

stack-down:
	bash $(STACK) down

stack-status:
	bash $(STACK) status

## stack-check: fail if PgBouncer crashed or was restarted behind the tests' back
stack-check:
	bash $(STACK) check

CONFORMANCE_SUMMARY ?= $(CURDIR)/.conformance-summary.txt
PEER_SUMMARY ?= $(CURDIR)/.peer-summary.txt
# The peer suites: sqlx's, pgx stdlib's and lib/pq's own tests through poolsafe (internal/peer).
PEER_TEST := POOLSAFE_REQUIRE_DB=1 POOLSAFE_PEER_SUMMARY=$(PEER_SUMMARY) $(GO) test -count=1 -timeout 10m -run '^TestPeerSuites$$' ./internal/peer

# The fault suites: the job pipeline through a fault proxy, pooler kill/restart and PostgreSQL
# restarts/crash (TestFaults), and the replica faults (TestReplicaFaults), on a throwaway stack of
# their own (127.0.0.1:15532/16532); one line per scenario and driver.
FAULTS := POOLSAFE_REQUIRE_DB=1 $(GO) test -count=1 -v -timeout 8m -run '^(TestFaults|TestReplicaFaults)$$' ./internal/faults

## test: unit tests + integration tests + the conformance matrix against the local stack, which it starts,
## then the peer suites on the same stack (a second step: they leave temporary tables and SETs on the
## pooler's server connections, which the other tests must not meet), then the fault suites on a stack
## of their own (make faults); a missing database fails, and so does a conformance target that failed or
## did not run, or a peer test failing outside internal/peer/expected_failures.txt
test: setup stack-up
	rm -f $(CONFORMANCE_SUMMARY) $(PEER_SUMMARY)
	$(WITH_STACK) POOLSAFE_REQUIRE_DB=1 POOLSAFE_CONFORMANCE_SUMMARY=$(CONFORMANCE_SUMMARY) $(GO) test -count=1 -timeout 14m -skip '^(TestFaults|TestReplicaFaults|TestPeerSuites)$$' ./... \
		|| { bash $(STACK) check; exit 1; }
	bash $(STACK) check
	@cat $(CONFORMANCE_SUMMARY) # TestMatrix fails unless all nine targets ran and passed
	$(WITH_STACK) $(PEER_TEST) || { bash $(STACK) check; exit 1; }
	bash $(STACK) check
	@cat $(PEER_SUMMARY) # TestPeerSuites fails on a failure outside the expected list, or a suite that did not run
	$(FAULTS)

## faults: only the fault suites (see FAULTS)
faults: setup
	$(FAULTS)

## conformance: only the conformance matrix (9 targets), with its summary
conformance: setup stack-up
	rm -f $(CONFORMANCE_SUMMARY)
	$(WITH_STACK) POOLSAFE_REQUIRE_DB=1 POOLSAFE_CONFORMANCE_SUMMARY=$(CONFORMANCE_SUMMARY) $(GO) test -count=1 -timeout 14m -run TestMatrix ./conformance \
		|| { bash $(STACK) check; exit 1; }
	bash $(STACK) check
	@cat $(CONFORMANCE_SUMMARY) # TestMatrix fails unless all nine targets ran and passed

# BENCH_REPORT= (empty) prints the report without rewriting bench/REPORT.md (CI's smoke run)
BENCH_REPORT ?= bench/REPORT.md
BENCHFLAGS ?= -count 5
## bench: the benchmark report bench/REPORT.md — the job queue against pgbench anchors, bulk upsert against COPY,
## as ratios over interleaved rounds (-count rounds, -benchtime per run; -benchtime 1x is a smoke run, as CI's) —
## then the wrapper's cost per query side by side with the raw drivers and pgxpool (compare with benchstat)
bench: setup stack-up
	$(WITH_STACK) $(GO) run ./bench $(BENCHFLAGS) -o=$(BENCH_REPORT)
	$(WITH_STACK) $(GO) test -run '^$$' -bench . -benchmem $(BENCHFLAGS) ./driverconf ./sqladapter

## unit: tests that need no database (database tests skip loudly)
unit:
	env -u POOLSAFE_TEST_DIRECT_URL -u POOLSAFE_TEST_SESSION_URL -u POOLSAFE_TEST_TX_URL \
		POOLSAFE_REQUIRE_DB=0 $(GO) test -count=1 -short ./...

## demo: each driver's pipeline in turn through a transaction pooler, its jobs/s and what bounds them:
## DATABASE_URL if set, else the local stack it starts (DEMO_FLAGS: e.g. -short, -domains N)
demo: setup
	@if [ -n "$${DATABASE_URL:-}" ]; then \
		$(GO) run ./examples/demo $(DEMO_FLAGS); \
	else \
		bash $(STACK) up >/dev/null; \
		$(WITH_STACK) DATABASE_URL="$$POOLSAFE_TEST_TX_URL" DIRECT_URL="$$POOLSAFE_TEST_DIRECT_URL" \
			DB_POOL_MODE=transaction $(GO) run ./examples/demo $(DEMO_FLAGS); \
	fi

## examples: build every example and run the runnable ones briefly through the transaction pooler (CI)
examples: setup stack-up
	$(GO) build ./examples/...
	$(WITH_STACK) export DATABASE_URL="$$POOLSAFE_TEST_TX_URL" DIRECT_URL="$$POOLSAFE_TEST_DIRECT_URL" DB_POOL_MODE=transaction \
		DATABASE_REPLICA_URLS="$$POOLSAFE_TEST_REPLICA_TX_URL&pool_mode=transaction" && \
		$(GO) run ./examples/demo -short && \
		for d in pgx pq; do \
			DB_DRIVER=$$d $(GO) run ./examples/quickstart >/dev/null || exit 1; \
			DATABASE_URL="$$DATABASE_URL&pool_mode=transaction&driver=$$d" $(GO) run ./examples/existing-codebase >/dev/null || exit 1; \
			DB_DRIVER=$$d $(GO) run ./examples/metrics -once >/dev/null || exit 1; \
			DB_DRIVER=$$d $(GO) run ./examples/worker -seed 50 -exit-when-idle >/dev/null || exit 1; \
			DB_DRIVER=$$d $(GO) run ./examples/tracing -metrics >/dev/null || exit 1; \
		done && \
		diff <(DB_DRIVER=pgx $(GO) run ./examples/swapdriver) <(DB_DRIVER=pq $(GO) run ./examples/swapdriver) && \
		echo "examples: all ran; swapdriver output identical on pgx and pq"

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

## lint: gofmt, go vet, go mod tidy check, staticcheck (fetched through the module proxy)
lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff
	$(GO) run $(STATICCHECK) ./...

## fuzz: run every fuzzer for FUZZTIME each (default 30s): URL parsing, password redaction, SQL lexing, error classification, domain names, JSON checks
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./driverconf
	$(GO) test -run '^$$' -fuzz '^FuzzRedaction$$' -fuzztime $(FUZZTIME) ./driverconf
	$(GO) test -run '^$$' -fuzz '^FuzzSingleStatementNoPanic$$' -fuzztime $(FUZZTIME) ./sqladapter
	$(GO) test -run '^$$' -fuzz '^FuzzClassify$$' -fuzztime $(FUZZTIME) ./sqladapter
	$(GO) test -run '^$$' -fuzz '^FuzzLexChecksMatchReference$$' -fuzztime $(FUZZTIME) ./sqladapter
	$(GO) test -run '^$$' -fuzz '^FuzzNormalizeDomain$$' -fuzztime $(FUZZTIME) ./repo
	$(GO) test -run '^$$' -fuzz '^FuzzCheckJSON$$' -fuzztime $(FUZZTIME) ./repo

## peer: sqlx's, pgx/stdlib's and lib/pq's own suites through poolsafe on both drivers, transaction pooler under load
## (also the last step of make test); one `peer <suite> <driver>/<mode>: N passed, M failed, K expected` line each
peer: setup stack-up
	rm -f $(PEER_SUMMARY)
	$(WITH_STACK) $(PEER_TEST) || { bash $(STACK) check; exit 1; }
	bash $(STACK) check
	@cat $(PEER_SUMMARY)
