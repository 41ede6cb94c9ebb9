# Targets are described in README.md.
GO ?= go
# Per fuzz target: `make test` uses FUZZTIME_SHORT, `make fuzz-long` FUZZTIME.
FUZZTIME_SHORT ?= 5s
FUZZTIME ?= 2m

.PHONY: build test fuzz-short fuzz-long demo bench

build:
	$(GO) build -o lazytree .

test:
	$(GO) vet ./...
	$(GO) test -race -timeout 25m ./...
	GO=$(GO) ./.ci/fuzz-short $(FUZZTIME_SHORT)

fuzz-short:
	GO=$(GO) ./.ci/fuzz-short $(FUZZTIME_SHORT)

fuzz-long:
	GO=$(GO) ./.ci/fuzz-short $(FUZZTIME)

demo: build
	./lazytree demo

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...
