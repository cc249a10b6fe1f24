# Vigil: the two commands a newcomer needs are `make run` and `make test`.
GO       ?= go
FUZZTIME ?= 60s

.PHONY: run test build bench lint fuzz clean

## run: start Vigil on its embedded default (./vigil-data, API on 127.0.0.1:8080)
run:
	$(GO) run ./cmd/vigil serve

## test: install missing test dependencies, then lint and run every test with the race detector
test: lint
	./scripts/test-deps.sh
	$(GO) test -race -count=1 ./...

## build: build bin/vigil
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/vigil ./cmd/vigil

## bench: benchmarks, reported against their baselines
bench:
	./bench/verify.sh
	./bench/audit.sh
	./bench/pg.sh

## lint: gofmt and go vet must be clean
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## fuzz: fuzz token parsing, audit hashing, CEF, the recording container, the PostgreSQL startup, SQL splitting and masking, FUZZTIME each (default 60s)
fuzz:
	$(GO) test ./internal/gateway/pggw/ -run '^$$' -fuzz FuzzNegotiate -fuzztime $(FUZZTIME)
	$(GO) test ./internal/rules/ -run '^$$' -fuzz FuzzSplitSQL -fuzztime $(FUZZTIME)
	$(GO) test ./internal/masking/ -run '^$$' -fuzz FuzzRow -fuzztime $(FUZZTIME)
	$(GO) test ./internal/token/ -run '^$$' -fuzz FuzzVerify -fuzztime $(FUZZTIME)
	$(GO) test ./internal/audit/ -run '^$$' -fuzz FuzzCanonical -fuzztime $(FUZZTIME)
	$(GO) test ./internal/siem/ -run '^$$' -fuzz FuzzCEF -fuzztime $(FUZZTIME)
	$(GO) test ./internal/recording/ -run '^$$' -fuzz FuzzFrameReader -fuzztime $(FUZZTIME)

clean:
	rm -rf bin
