# fieldcon — build, test, lint, bench.
GO       ?= go
PKGS     := ./...
# Fuzz targets run for a bounded time in `make test` (FUZZTIME per target).
FUZZTIME ?= 10s

.PHONY: build test unit fuzz lint bench clean

build:
	$(GO) build -o bin/fieldcon ./cmd/fieldcon

# Unit and integration tests. Integration tests build labs in network
# namespaces and need root; without it they skip and say so.
test: build
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 40m $(PKGS)
	$(MAKE) --no-print-directory fuzz

# Every fuzz target, each for FUZZTIME.
fuzz:
	@set -e; log=$$(mktemp); trap 'rm -f $$log' EXIT; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
	    echo "fuzz $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg >$$log 2>&1 || \
	    { echo "  retrying once (a crasher is kept in testdata/fuzz and fails again; a loaded machine's runner timeout does not)"; \
	      $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg >$$log 2>&1; } || \
	    { cat $$log; echo "FAIL fuzz $$pkg $$f"; exit 1; }; \
	  done; \
	done

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@latest $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

clean:
	rm -rf bin
