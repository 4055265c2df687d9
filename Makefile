# bothy — see README.md. `make help` lists the targets.

GO      ?= go
BIN     := bin
DATA    ?= ./data
LISTEN  ?= 127.0.0.1:7070
GOFLAGS_BUILD := -trimpath

.DEFAULT_GOAL := help
.PHONY: help build image run engine browser e2b-sdk openapi-ts mcp-inspector proto test test-kube test-unit lint bench bench-kube kube-up kube-down kube-deploy kube-undeploy clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}' | \
		sed -e 's|$$(LISTEN)|$(LISTEN)|' -e 's|$$(DATA)|$(DATA)|' -e 's|$$(IMAGE)|$(IMAGE)|'

build: web/vendor/xterm.js ## build bin/bothyd, bin/bothy and the static bin/bothy-agent (and the web UI's npm assets)
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/bothy-agent ./cmd/bothy-agent
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/bothyd ./cmd/bothyd
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/bothy ./cmd/bothy

IMAGE ?= bothy/bothy:latest

image: build engine ## build the container image of bothy itself as $(IMAGE) (docs/image.md)
	$(BIN)/bothyd --data $(DATA) --build-image bothy/base >/dev/null
	docker build -q -t $(IMAGE) .

web/vendor/xterm.js: web/package.json web/package-lock.json scripts/web.sh
	bash scripts/web.sh

engine: ## make sure a Docker engine runs (installs and starts Debian's docker.io if not)
	bash scripts/engine.sh

e2b-sdk: compat/e2b/sdk/node_modules/e2b/package.json ## install E2B's JS SDK (pinned) for the compatibility test

compat/e2b/sdk/node_modules/e2b/package.json: compat/e2b/sdk/package.json compat/e2b/sdk/package-lock.json scripts/e2b-sdk.sh
	bash scripts/e2b-sdk.sh

mcp-inspector: mcp/inspector/node_modules/@modelcontextprotocol/inspector/package.json ## install the MCP Inspector (pinned) for the MCP client test

mcp/inspector/node_modules/@modelcontextprotocol/inspector/package.json: mcp/inspector/package.json mcp/inspector/package-lock.json scripts/mcp-inspector.sh
	bash scripts/mcp-inspector.sh

openapi-ts: openapi/ts/node_modules/openapi-typescript/package.json ## install openapi-typescript and tsc (pinned) for the generated-client test

openapi/ts/node_modules/openapi-typescript/package.json: openapi/ts/package.json openapi/ts/package-lock.json scripts/openapi-ts.sh
	bash scripts/openapi-ts.sh

proto: ## regenerate compat/e2b's and agent/kep's Go code from their .proto files (needs protoc and the two plugins; the output is committed)
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" protoc -I compat/e2b/proto --go_out=. --go_opt=module=github.com/bothy/bothy \
		--connect-go_out=. --connect-go_opt=module=github.com/bothy/bothy \
		compat/e2b/proto/process/process.proto compat/e2b/proto/filesystem/filesystem.proto
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" protoc -I agent/kep/proto -I /usr/include --go_out=. --go_opt=module=github.com/bothy/bothy \
		--connect-go_out=. --connect-go_opt=module=github.com/bothy/bothy agent/kep/proto/process.proto

browser: ## make sure Debian's chromium is installed (browser tests)
	bash scripts/browser.sh

run: build engine ## start bothy on $(LISTEN) with data in $(DATA)
	$(BIN)/bothyd --listen $(LISTEN) --data $(DATA)

test: build engine browser e2b-sdk openapi-ts mcp-inspector lint ## unit, Docker-backed integration, end-to-end, browser, real clients (E2B SDK, MCP Inspector, Python, openapi-typescript), and the Kubernetes tier on a real cluster
	BOTHY_REQUIRE_DOCKER=1 $(GO) test -race -count=1 -timeout 50m -artifacts ./...
	@echo "the end-to-end suite again, every sandbox on the agent channel's network transport (TCP + mutual TLS)"
	BOTHY_REQUIRE_DOCKER=1 BOTHY_AGENT_TRANSPORT=tcp $(GO) test -race -count=1 -timeout 50m ./e2e
	@echo "the Kubernetes tier, on a cluster brought up and taken down for it"
	GO=$(GO) bash scripts/test-kube.sh

test-kube: build engine ## only the Kubernetes tier: brings the cluster up, runs every Kube* test on it, takes it down (docs/kubernetes.md)
	GO=$(GO) bash scripts/test-kube.sh

test-unit: ## the tests that need no engine (with DOCKER_HOST pointing nowhere, so that one that reaches for it fails)
	DOCKER_HOST=unix:///nonexistent/no-engine.sock $(GO) test -race -count=1 -short ./...

lint: ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

bench: build engine ## measure bothy beside Docker on this machine, then on a Kubernetes cluster brought up for it
	$(GO) run ./bench -bothyd $(BIN)/bothyd -agent $(BIN)/bothy-agent
	GO=$(GO) BIN=$(BIN) bash scripts/bench-kube.sh

bench-kube: build engine ## only the Kubernetes section of the benchmark (brings the cluster up and down)
	GO=$(GO) BIN=$(BIN) bash scripts/bench-kube.sh

kube-up: ## bring up a single-node Kubernetes cluster on loopback with agent-sandbox (docs/kubernetes.md; binaries built once, then cached)
	bash scripts/kube.sh up

kube-down: ## stop that cluster and remove everything it made
	bash scripts/kube.sh down

kube-deploy: image ## run bothyd inside that cluster: deploy/kubernetes with the cluster's overlay (scripts/kube-deploy.sh; needs make kube-up)
	BOTHY_DEPLOY_IMAGE=$(IMAGE) bash scripts/kube-deploy.sh up

kube-undeploy: ## remove bothyd from that cluster, with its sandboxes and data
	bash scripts/kube-deploy.sh down

clean: ## remove built binaries (not the data directory)
	rm -rf $(BIN)
