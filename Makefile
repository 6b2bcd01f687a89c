# Image URL to use all building/pushing image targets
IMG ?= controller:latest

# Get the currently used golang install path (in GOPATH/bin, unless GOBIN is set)
ifeq (,$(shell go env GOBIN))
GOBIN=$(shell go env GOPATH)/bin
else
GOBIN=$(shell go env GOBIN)
endif

# CONTAINER_TOOL defines the container tool to be used for building images.
# Be aware that the target commands are only tested with Docker which is
# scaffolded by default. However, you might want to replace it to use other
# tools. (i.e. podman)
CONTAINER_TOOL ?= docker

# Setting SHELL to bash allows bash commands to be executed by recipes.
# Options are set to exit when a recipe line exits non-zero or a piped command fails.
SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

.PHONY: all
all: build

##@ General

# The help target prints out all targets with their descriptions organized
# beneath their categories. The categories are represented by '##@' and the
# target descriptions by '##'. The awk command is responsible for reading the
# entire set of makefiles included in this invocation, looking for lines of the
# file as xyz: ## something, and then pretty-format the target and help. Then,
# if there's a line with ##@ something, that gets pretty-printed as a category.
# More info on the usage of ANSI control characters for terminal formatting:
# https://en.wikipedia.org/wiki/ANSI_escape_code#SGR_parameters
# More info on the awk command:
# http://linuxcommand.org/lc3_adv_awk.php

.PHONY: help
help: ## Display this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-15s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate WebhookConfiguration, ClusterRole and CustomResourceDefinition objects.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd webhook paths="./..." output:crd:artifacts:config=config/crd/bases

.PHONY: generate
generate: controller-gen ## Generate code containing DeepCopy, DeepCopyInto, and DeepCopyObject method implementations.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./..."

.PHONY: docs
docs: manifests ## Regenerate docs/crd-reference.md from the CRD.
	go run ./hack/crd-docs -o docs/crd-reference.md config/crd/bases/auth.registryauth.io_registryauthpolicies.yaml

.PHONY: fmt
fmt: ## Run go fmt against code.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet against code.
	go vet ./...

.PHONY: fmt-check
fmt-check: ## Fail if `gofmt -l` lists any Go file (also testdata/ and hack/).
	@out="$$(find . -name '*.go' -not -path './bin/*' -not -path './dist/*' -not -path './.git/*' -print0 | xargs -0 -r gofmt -l)"; \
	if [ -n "$$out" ]; then echo "gofmt -l lists unformatted files (run 'make fmt'):"; echo "$$out"; exit 1; fi

# test-plan prints the first line of make test: what it is about to build and
# for how long (the node too when run as root: provision can then make the
# real-node suite runnable). provision then installs nginx, a C compiler and
# the node's packages when it can (root with apt-get) or says what is
# missing: the nginx tests and the real-node suite skip and go test runs
# without -race (CI=true: a missing part fails instead). node-if-ready builds
# the node only when the real-node suite can run here.
# fmt-check runs before fmt so that unformatted code fails the tests instead of
# being silently rewritten. At the end, what was missing is said again, as
# go test does not list skipped tests.
.PHONY: test
test: test-plan provision manifests generate fmt-check fmt vet envtest helm crds node-if-ready ## Run all tests with the race detector (unit, envtest, e2e with nginx, the real-node suite as root). First provides nginx, gcc and containerd & co. (hack/provision.sh --node) and builds the control plane (~10 min), helm (~2-3 min more) and, as root, the node (~4 min more).
	@race="$$(hack/provision.sh --race-flag)"; \
	[ -n "$$race" ] || echo "go test runs without -race: the race detector needs cgo and a working C compiler (see [provision] above)"; \
	echo "KUBEBUILDER_ASSETS=\"$(ENVTEST_ASSETS)\" go test $$race ./... -count=1 -timeout 20m"; \
	rc=0; KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go test $$race ./... -count=1 -timeout 20m || rc=$$?; \
	hack/provision.sh --check --node 2>&1 | grep '^\[provision\] missing: ' || true; \
	exit $$rc

.PHONY: test-plan
test-plan:
	@PLAN_NODE="$$([ "$$(id -u)" = 0 ] && echo 1 || echo 0)" \
	CONTROLLER_GEN_BIN="$(CONTROLLER_GEN)-$(CONTROLLER_TOOLS_VERSION)" hack/build-tools.sh plan "make test"

.PHONY: provision
provision: ## Install what the tests need (nginx, gcc; containerd, runc, CNI plugins, nftables for the real-node suite) as root with apt-get, else say what is missing (hack/provision.sh --node).
	@hack/provision.sh --node

.PHONY: node-if-ready
node-if-ready:
	@if hack/provision.sh --node-ready; then $(MAKE) --no-print-directory node; fi

# The real-node suite (test/node): a real single-node cluster in namespaces
# of its own, dist/install.yaml and the Helm chart installed with the image
# make image builds (the suite builds it again itself, so it is never stale).
# Needs root; see test/utils/realnode. About 3 minutes once built.
.PHONY: test-node
test-node: provision envtest helm node ## Run the real-node suite alone (root; installs containerd & co. like make test). Results in bin/test-node/results.md.
	go test ./test/node -count=1 -v -timeout 20m

# Fuzz targets, as package:target. Seed corpora are committed under each
# package's testdata/fuzz; each target runs for FUZZTIME. A target that is not
# found fails (go test -fuzz alone would only warn).
FUZZ_TARGETS ?= ./authserver/pathnorm:FuzzNormalizePath ./authserver/frontend/extauthz:FuzzParse ./authserver/authn:FuzzParseAuthorization ./authserver/authn:FuzzCookieValue ./authserver/authn/session:FuzzSessionVerify ./standalone:FuzzParseAPIKeysEnv ./standalone:FuzzEnvJSONNoEcho ./authserver/policy:FuzzCompile
FUZZTIME ?= 10s

.PHONY: lint
lint: golangci-lint ## Run golangci-lint (.golangci.yml: vet, staticcheck, errcheck, depguard's layering rules, ...).
	$(GOLANGCI_LINT) run ./...

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 10s); any crash fails.
	@for pt in $(FUZZ_TARGETS); do \
		pkg="$${pt%%:*}"; t="$${pt##*:}"; \
		go test "$$pkg" -list "^$$t\$$" | grep -x "$$t" >/dev/null || { echo "fuzz target $$t not found in $$pkg"; exit 1; }; \
		echo "fuzz $$pkg $$t ($(FUZZTIME))"; \
		go test "$$pkg" -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) || exit 1; \
	done

##@ Benchmarks

# Flags of the bench program (go run ./hack/bench -h), e.g.
# BENCH_ARGS="-duration 2s -warmup 1s -rounds 1 -rotations 10" for a quick run.
BENCH_ARGS ?=

.PHONY: bench
bench: envtest ## Measure checks through a real nginx (ingress-nginx auth-url, with and without auth keepalive), throughput and latency (wrk vs a minimal server and oauth2-proxy), rotation latency, 10,000 and 1,000 policies and the decision function; writes bench/results (see bench/README.md). About 30 minutes; not part of test.
	@command -v wrk >/dev/null 2>&1 || { echo "make bench needs wrk, the HTTP load generator: install it with 'apt-get install wrk' (Debian/Ubuntu) and run make bench again."; exit 1; }
	go run ./hack/bench $(BENCH_ARGS)

##@ Build

.PHONY: build
build: manifests generate fmt vet ## Build the registry-auth binary (bin/registry-auth).
	go build -o $(LOCALBIN)/registry-auth ./cmd

# NODE=1: a real single-node cluster instead of the bare control plane, with
# the operator installed from dist/install.yaml as two pods of the image make
# image builds (root; hack/provision.sh --node's packages).
NODE ?=
.PHONY: run
run: manifests generate fmt vet envtest crds build $(if $(filter 1,$(NODE)),node image) ## Start a local control plane, apply config/samples and run bin/registry-auth (see hack/localup). RUN_ARGS="--no-operator" only starts the cluster. NODE=1 starts a real node and runs the operator on it as pods (root).
	go build -o $(LOCALBIN)/localup ./hack/localup
	exec $(LOCALBIN)/localup $(if $(filter 1,$(NODE)),-node) $(RUN_ARGS)

.PHONY: image
image: ## Build the image localhost/registry-auth:dev (the Dockerfile's, without a container engine) and the local pause image as OCI archives in bin/image (hack/build-image.sh).
	hack/build-image.sh

# If you wish to build the manager image targeting other platforms you can use the --platform flag.
# (i.e. docker build --platform linux/arm64). However, you must enable docker buildKit for it.
# More info: https://docs.docker.com/develop/develop-images/build_enhancements/
.PHONY: docker-build
docker-build: ## Build docker image with the manager.
	$(CONTAINER_TOOL) build -t ${IMG} .

.PHONY: docker-push
docker-push: ## Push docker image with the manager.
	$(CONTAINER_TOOL) push ${IMG}

# The image is set in a throwaway overlay of config/default (under bin/), so
# config/manager/kustomization.yaml is left as committed whatever IMG is.
# test/install checks that dist/ matches config/ for the default IMG.
.PHONY: build-installer
build-installer: manifests generate kustomize | $(LOCALBIN) ## Generate dist/install.yaml (kustomize build config/default, image IMG) and copy the CRDs into the Helm chart (dist/chart/files/crds).
	mkdir -p dist dist/chart/files/crds
	@overlay="$$(mktemp -d "$(LOCALBIN)/installer.XXXXXX")"; trap 'rm -rf "$$overlay"' EXIT; \
	printf 'resources:\n- %s\n' "$$(realpath --relative-to="$$overlay" config/default)" > "$$overlay/kustomization.yaml"; \
	(cd "$$overlay" && $(KUSTOMIZE) edit set image controller=$(IMG)); \
	$(KUSTOMIZE) build "$$overlay" > "$$overlay/install.yaml"; \
	mv "$$overlay/install.yaml" dist/install.yaml; \
	echo "wrote dist/install.yaml (image $(IMG))"
	rm -f dist/chart/files/crds/*.yaml
	cp config/crd/bases/*.yaml dist/chart/files/crds/

##@ Deployment

ifndef ignore-not-found
  ignore-not-found = false
endif

.PHONY: install
install: manifests kustomize ## Install CRDs into the K8s cluster specified in ~/.kube/config (or $KUBECONFIG).
	@out="$$( $(KUSTOMIZE) build config/crd 2>/dev/null || true )"; \
	if [ -n "$$out" ]; then echo "$$out" | $(KUBECTL) apply -f -; else echo "No CRDs to install; skipping."; fi

.PHONY: uninstall
uninstall: manifests kustomize ## Uninstall CRDs from the K8s cluster specified in ~/.kube/config. Call with ignore-not-found=true to ignore resource not found errors during deletion.
	@out="$$( $(KUSTOMIZE) build config/crd 2>/dev/null || true )"; \
	if [ -n "$$out" ]; then echo "$$out" | $(KUBECTL) delete --ignore-not-found=$(ignore-not-found) -f -; else echo "No CRDs to delete; skipping."; fi

.PHONY: deploy
deploy: manifests kustomize ## Deploy controller to the K8s cluster specified in ~/.kube/config.
	cd config/manager && $(KUSTOMIZE) edit set image controller=${IMG}
	$(KUSTOMIZE) build config/default | $(KUBECTL) apply -f -

.PHONY: undeploy
undeploy: kustomize ## Undeploy controller from the K8s cluster specified in ~/.kube/config. Call with ignore-not-found=true to ignore resource not found errors during deletion.
	$(KUSTOMIZE) build config/default | $(KUBECTL) delete --ignore-not-found=$(ignore-not-found) -f -

##@ Dependencies

## Location to install dependencies to
LOCALBIN ?= $(shell pwd)/bin
$(LOCALBIN):
	mkdir -p $(LOCALBIN)

## Local control plane (etcd, kube-apiserver, kubectl) built by hack/build-tools.sh
ENVTEST_ASSETS ?= $(abspath $(LOCALBIN)/k8s)

## Tool Binaries
KUBECTL ?= $(LOCALBIN)/k8s/kubectl
HELM ?= $(LOCALBIN)/helm
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint
KUSTOMIZE ?= $(LOCALBIN)/kustomize
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen

## Tool Versions
KUSTOMIZE_VERSION ?= v5.8.1
CONTROLLER_TOOLS_VERSION ?= v0.23.0

.PHONY: envtest
envtest: ## Build etcd, kube-apiserver and kubectl into bin/k8s from hack/tools (skipped when up to date; first build ~10 min).
	hack/build-tools.sh

.PHONY: golangci-lint
golangci-lint: ## Build golangci-lint into bin/golangci-lint from hack/tools/lint (skipped when up to date; ~4 min cold).
	hack/build-tools.sh lint

.PHONY: node
node: envtest ## Build kubelet, kube-proxy, kube-controller-manager and kube-scheduler into bin/node from hack/tools (skipped when up to date; ~4 min after make envtest).
	hack/build-tools.sh node

.PHONY: helm
helm: ## Build helm into bin/helm from hack/tools (skipped when up to date; ~2-3 min after `make envtest`, ~5 min CPU from a cold cache).
	hack/build-tools.sh helm

.PHONY: crds
crds: ## Copy third-party CRDs (Traefik, Envoy Gateway SecurityPolicy, Gateway API experimental channel, Istio) from the Go module cache into bin/crds for envtest.
	hack/fetch-crds.sh

.PHONY: kustomize
kustomize: | $(LOCALBIN) ## Download kustomize locally if necessary.
	$(call go-install-tool,$(KUSTOMIZE),sigs.k8s.io/kustomize/kustomize/v5,$(KUSTOMIZE_VERSION))

.PHONY: controller-gen
controller-gen: | $(LOCALBIN) ## Download controller-gen locally if necessary.
	$(call go-install-tool,$(CONTROLLER_GEN),sigs.k8s.io/controller-tools/cmd/controller-gen,$(CONTROLLER_TOOLS_VERSION))

# go-install-tool will 'go install' any package with custom target and name of binary, if it doesn't exist
# $1 - target path with name of binary
# $2 - package url which can be installed
# $3 - specific version of package
define go-install-tool
@[ -f "$(1)-$(3)" ] && [ "$$(readlink -- "$(1)" 2>/dev/null)" = "$(1)-$(3)" ] || { \
set -e; \
package=$(2)@$(3) ;\
echo "Downloading $${package}" ;\
rm -f "$(1)" ;\
GOBIN="$(LOCALBIN)" go install $${package} ;\
mv "$(LOCALBIN)/$$(basename "$(1)")" "$(1)-$(3)" ;\
} ;\
ln -sf "$$(realpath "$(1)-$(3)")" "$(1)"
endef
