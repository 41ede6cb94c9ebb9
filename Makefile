# Targets are described in README.md.
GO ?= go
# Per fuzz target: `make test` uses FUZZTIME_SHORT, `make fuzz-long` FUZZTIME.
FUZZTIME_SHORT ?= 5s
FUZZTIME ?= 2m

.PHONY: build install test fuzz-short fuzz-long demo bench bench-go

build:
	$(GO) build -o lazytree .

# The binary, its man pages and bash/zsh/fish completions, under
# DESTDIR/PREFIX (man pages and completions come from `lazytree docs`).
PREFIX ?= /usr/local
install: build
	install -D -m 0755 lazytree $(DESTDIR)$(PREFIX)/bin/lazytree
	rm -rf .docs-out && ./lazytree docs --man .docs-out/man --completions .docs-out/comp
	install -d $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0644 .docs-out/man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -D -m 0644 .docs-out/comp/lazytree.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/lazytree
	install -D -m 0644 .docs-out/comp/_lazytree $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_lazytree
	install -D -m 0644 .docs-out/comp/lazytree.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/lazytree.fish
	rm -rf .docs-out

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

# The default matrix of `lazytree bench` on the host-Python sample (5,000+
# files): report.json, report.html and the charts go to BENCH_OUT.
BENCH_OUT ?= bench-out
bench: build
	./lazytree bench --sample python --rtt 25ms,50ms --bandwidth 100Mbit \
	  --strategy none,metadata,profile --peer ostree --workload builtin:start,builtin:first-read \
	  --out $(BENCH_OUT)

# Every Go benchmark of the module (long; see README.md for the figures).
bench-go:
	$(GO) test -run='^$$' -bench=. -benchmem ./...
