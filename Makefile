# Everything runs locally: the stand-ins (internal/devstack) replace Azure.
# Needs Go 1.26 and Node.js 20 with npm (the Service Bus stand-in, Azurite
# for the ledger's table and the Bicep check are Node packages, installed
# from the npm registry by `deps`).

GO      ?= go
NPM     ?= npm
BIN     := bin
HANDLER := $(BIN)/handler
BROKER  := internal/devstack/servicebus/broker
AZURITE := internal/devstack/tablestore/azurite
BICEP   := tools/bicepcheck

.PHONY: all demo up test deps build check bench soak fuzz package stage clean

all: test

## demo: run the handler on the local stand-ins, issuing, listing and revoking tokens
demo: deps build
	$(GO) run ./cmd/devstack demo -handler $(HANDLER)

## up: start the stand-ins and the handler, and wait (for curl)
up: deps build
	$(GO) run ./cmd/devstack up -handler $(HANDLER)

## test: formatting, vet, and every test (unit, fuzz seeds, end to end, deployment checks)
test: deps check
	$(GO) test -race -count=1 -timeout 12m ./...

check:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './node_modules/*')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

deps: $(BROKER)/node_modules/.package-lock.json $(AZURITE)/node_modules/.package-lock.json $(BICEP)/node_modules/.package-lock.json

$(BROKER)/node_modules/.package-lock.json: $(BROKER)/package-lock.json
	$(NPM) ci --prefix $(BROKER) --no-audit --no-fund

$(AZURITE)/node_modules/.package-lock.json: $(AZURITE)/package-lock.json
	$(NPM) ci --prefix $(AZURITE) --no-audit --no-fund

$(BICEP)/node_modules/.package-lock.json: $(BICEP)/package-lock.json
	$(NPM) ci --prefix $(BICEP) --no-audit --no-fund

build:
	$(GO) build -trimpath -o $(HANDLER) .

## bench: the performance figures of docs/PERFORMANCE.md
bench: deps build
	$(GO) run ./cmd/bench -handler $(HANDLER)
	$(GO) test -run '^$$' -bench . -benchmem ./handler ./internal/e2e

## soak: the long redelivery soak of docs/RELIABILITY.md
soak: deps
	SOAK_COMMANDS=1000 $(GO) test -count=1 -timeout 60m -run TestSoak -v ./internal/e2e

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
## folders), and dist/app, the same tree unpacked (azd deploys it; `func start` runs in it)
## INCLUDE: extra files to ship, e.g. make package INCLUDE=authz-policy.json (for AUTHZ_POLICY=@authz-policy.json)
INCLUDE ?=
package:
	$(GO) run ./cmd/package -o dist/app.zip -dir dist/app $(foreach f,$(INCLUDE),-include $(f))

## stage: dist/app with your local.settings.json, for `cd dist/app && func start`
stage: package
	@if [ -f local.settings.json ]; then cp local.settings.json dist/app/; else echo "copy local.settings.json.example to local.settings.json first"; exit 1; fi

clean:
	rm -rf $(BIN) dist
