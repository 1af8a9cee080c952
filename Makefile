# Everything runs locally: the stand-ins (devstack/) replace Azure.
# Needs Go 1.26 and Node.js 20 with npm (the Service Bus stand-in, Azurite
# for the ledger's table, and the Bicep and KQL checks are Node packages,
# installed from the npm registry by `deps`).

GO      ?= go
NPM     ?= npm
BIN     ?= bin
HANDLER := $(BIN)/handler
DEVSTACK := $(BIN)/devstack
BROKER  := devstack/fakeservicebus/broker
AZURITE := devstack/faketables/azurite
BICEP   := tools/bicepcheck
KQL     := tools/kqlcheck

.PHONY: all help demo up send test deps build check bench soak fuzz package stage clean

all: test

## help: list the targets
help:
	@awk '/^## [a-z]+: /{n=index($$0,": "); printf "  make %-8s %s\n", substr($$0,4,n-4), substr($$0,n+2); next} /^##   /{printf "  %14s%s\n", "", substr($$0,6)}' $(MAKEFILE_LIST)
	@echo "The first run downloads Go modules (from the Go module proxy) and the npm packages of the"
	@echo "Service Bus stand-in and the Bicep check (from the npm registry); later runs need no network."

## demo: run the handler on the local stand-ins, issuing, listing and revoking tokens
demo: deps build
	$(DEVSTACK) demo -handler $(HANDLER)

# The built binary runs in make's place, not `go run`: make passes SIGTERM
# on to its child, and `go run` would die of it and leave devstack, the
# broker and the handler running.
## up: start the stand-ins and the handler and wait (for curl); Ctrl-C or kill stops all of it
up: deps build
	$(DEVSTACK) up -handler $(HANDLER)

## send: while make up runs, send a create command to token-requests and print its result
send: build
	$(DEVSTACK) send -handler $(HANDLER)

## test: formatting, vet, and every test (unit, fuzz seeds, end to end, deployment checks)
test: deps check
	$(GO) test -race -count=1 -timeout 12m ./...

## check: gofmt and go vet
check:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './node_modules/*')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

## deps: the npm packages of the Service Bus stand-in, Azurite, the Bicep check and the KQL check (npm ci)
deps: $(BROKER)/node_modules/.package-lock.json $(AZURITE)/node_modules/.package-lock.json $(BICEP)/node_modules/.package-lock.json $(KQL)/node_modules/.package-lock.json

$(BROKER)/node_modules/.package-lock.json: $(BROKER)/package-lock.json
	$(NPM) ci --prefix $(BROKER) --no-audit --no-fund

$(AZURITE)/node_modules/.package-lock.json: $(AZURITE)/package-lock.json
	$(NPM) ci --prefix $(AZURITE) --no-audit --no-fund

$(BICEP)/node_modules/.package-lock.json: $(BICEP)/package-lock.json
	$(NPM) ci --prefix $(BICEP) --no-audit --no-fund

$(KQL)/node_modules/.package-lock.json: $(KQL)/package-lock.json
	$(NPM) ci --prefix $(KQL) --no-audit --no-fund

## build: bin/handler and bin/devstack
build:
	$(GO) build -trimpath -o $(HANDLER) .
	$(GO) build -o $(DEVSTACK) ./cmd/devstack # no -trimpath: it finds the broker beside its source

## bench: the performance figures, written into docs/PERFORMANCE.md (BENCH_NOTE= adds a sentence)
BENCH_NOTE ?=
bench: deps build
	$(GO) run ./cmd/bench -handler $(HANDLER) -doc docs/PERFORMANCE.md -note "$(BENCH_NOTE)"
	$(GO) test -run '^$$' -bench . -benchmem ./handler ./test/e2e

## soak: the long redelivery soak of docs/RELIABILITY.md
soak: deps
	SOAK_COMMANDS=1000 $(GO) test -count=1 -timeout 60m -run TestSoak -v ./test/e2e

## fuzz: each fuzz target for FUZZTIME (default 2m)
FUZZTIME ?= 2m
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeCreate$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./internal/tokens
	$(GO) test -run '^$$' -fuzz '^FuzzParseWorkspaceID$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./internal/tokens
	$(GO) test -run '^$$' -fuzz '^FuzzSplitComment$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./internal/tokens
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeServiceBus$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./handler
	$(GO) test -run '^$$' -fuzz '^FuzzParseErrorBody$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./internal/databricks
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./internal/events
	$(GO) test -run '^$$' -fuzz '^FuzzEscapeKey$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./internal/ledger

## package: dist/app.zip, what a Function App runs (linux/amd64 handler, host.json, function
##   folders; azd deploys it), and dist/app, the same tree unpacked (for func start and func publish)
##   INCLUDE= ships extra files, e.g. make package INCLUDE=authz-policy.json (AUTHZ_POLICY=@authz-policy.json)
INCLUDE ?=
package:
	$(GO) run ./cmd/package -o dist/app.zip -dir dist/app $(foreach f,$(INCLUDE),-include $(f))

## stage: dist/app with your local.settings.json, for `cd dist/app && func start`
stage: package
	@if [ -f local.settings.json ]; then cp local.settings.json dist/app/; else echo "copy local.settings.json.example to local.settings.json first"; exit 1; fi

## clean: remove bin and dist
clean:
	rm -rf $(BIN) dist
