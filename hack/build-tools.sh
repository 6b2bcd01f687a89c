#!/usr/bin/env bash
# Builds tools from source, from the Go module proxy (no prebuilt downloads).
#
#   hack/build-tools.sh [control-plane]   the local control plane used by
#                                         envtest and `make run` (make envtest):
#     bin/k8s/etcd            go.etcd.io/etcd/server/v3
#     bin/k8s/kube-apiserver  k8s.io/kubernetes/cmd/kube-apiserver
#     bin/k8s/kubectl         k8s.io/kubernetes/cmd/kubectl
#
#   hack/build-tools.sh helm              bin/helm (make helm):
#     bin/helm                helm.sh/helm/v3/cmd/helm
#
#   hack/build-tools.sh node              the node of the real-node suite
#                                         (test/node, make test-node, make run
#                                         NODE=1), into bin/node (make node):
#     bin/node/kubelet                  k8s.io/kubernetes/cmd/kubelet
#     bin/node/kube-proxy               k8s.io/kubernetes/cmd/kube-proxy
#     bin/node/kube-controller-manager  k8s.io/kubernetes/cmd/kube-controller-manager
#     bin/node/kube-scheduler           k8s.io/kubernetes/cmd/kube-scheduler
#
#   hack/build-tools.sh plan [WHO]        prints one line saying what the
#                                         control plane and helm (and, with
#                                         PLAN_NODE=1, the node) would build
#                                         and how long that takes, or that
#                                         they are up to date (make test
#                                         prints it first); with
#                                         CONTROLLER_GEN_BIN set, controller-gen
#                                         is counted too when that file is
#                                         missing
#
# Versions come from hack/tools/go.mod. Each build is skipped when its stamp
# (bin/k8s/.stamp, bin/.helm.stamp, bin/node/.stamp) records the same
# versions and the binaries exist. A cold control-plane build takes about 10
# minutes on 2 cores. helm and the node are separate targets so that `make
# envtest` does not wait for them; after the control plane helm takes 2-3
# minutes more, as it shares most packages (client-go, cli-runtime, kubectl)
# with kubectl through the build cache (same module graph, same flags), and
# the node about 4 minutes more. FORCE=1 rebuilds.
#
# While `go build` runs, a progress line comes every PROGRESS_INTERVAL
# seconds (default 30): time elapsed, what is being built and how many of
# its packages were compiled so far, so a long build is never silent.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${ROOT}/hack/tools"

log() { printf '[build-tools] %s\n' "$*" >&2; }
die() { printf '[build-tools] ERROR: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "go is not on PATH"

cd "${TOOLS_DIR}"

# Resolve the versions the tools module pins (cheap: no build).
mod_field() { # module, template
	go list -m -f "$2" "$1" 2>/dev/null || die "cannot resolve $1 in ${TOOLS_DIR}/go.mod"
}

# elapsed SECONDS: "4m05s".
elapsed() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# go_build WHAT LDFLAGS OUT PKG...: CGO_ENABLED=0 go build -trimpath with
# LDFLAGS into OUT. Every PROGRESS_INTERVAL seconds (default 30) it logs the
# time elapsed, WHAT is being built and how many packages were compiled (of
# how many there are: a cold build compiles them all, a warm one fewer), so
# a build of several minutes is never silent. The compiler's and go's own
# messages (downloads, errors) come through unchanged.
go_build() {
	local what="$1" ldflags="$2" out="$3"
	shift 3
	local interval="${PROGRESS_INTERVAL:-30}" start=${SECONDS} rc=0 work ticker
	work="$(mktemp -d)"
	: >"${work}/compiled"
	(
		# How many packages the build involves, meanwhile (a few seconds).
		{ CGO_ENABLED=0 go list -deps "$@" 2>/dev/null | wc -l >"${work}/total.tmp" &&
			mv "${work}/total.tmp" "${work}/total"; } >/dev/null 2>&1 &
		next=$((start + interval))
		# Ends with this script, however that ends.
		while sleep 1 && kill -0 $$ 2>/dev/null; do
			((SECONDS >= next)) || continue
			next=$((next + interval))
			n="$(wc -l <"${work}/compiled" 2>/dev/null)" || n=0
			n="${n// /}"
			total=""
			[[ -s "${work}/total" ]] && total=" of at most $(tr -d ' ' <"${work}/total")"
			latest="$(tail -n1 "${work}/compiled" 2>/dev/null)" || latest=""
			log "$(elapsed $((SECONDS - start))) building ${what}: ${n}${total} packages compiled${latest:+, latest ${latest}}"
		done
	) &
	ticker=$!
	# -v prints each package as it is compiled: those lines are counted, the
	# rest goes to stderr as usual.
	CGO_ENABLED=0 go build -v -trimpath -ldflags "${ldflags}" -o "${out}" "$@" 2>&1 >&2 |
		while IFS= read -r line; do
			if [[ "${line}" =~ ^[A-Za-z0-9._~+/-]+$ ]]; then
				printf '%s\n' "${line}" >>"${work}/compiled"
			else
				printf '%s\n' "${line}" >&2
			fi
		done || rc=$?
	kill "${ticker}" 2>/dev/null || true
	wait "${ticker}" 2>/dev/null || true
	rm -rf "${work}"
	if ((rc != 0)); then
		die "go build of ${what} failed (exit ${rc}) after $(elapsed $((SECONDS - start)))"
	fi
}

# bin/helm. Built like helm's own Makefile does: its version, and the
# Kubernetes version that `helm lint` (deprecations) and `helm template`
# (.Capabilities.KubeVersion) assume, from the client-go it is built with.
HELM_OUT="${ROOT}/bin/helm"
HELM_STAMP="${ROOT}/bin/.helm.stamp"

# helm_versions sets HELM_VERSION, CLIENT_GO, HELM_K8S_MINOR and
# HELM_WANT_STAMP.
helm_versions() {
	# Bump when the way the binary is built changes (flags, name).
	local stamp_format=1
	HELM_VERSION="$(mod_field helm.sh/helm/v3 '{{.Version}}')"
	CLIENT_GO="$(mod_field k8s.io/client-go '{{with .Replace}}{{.Version}}{{else}}{{.Version}}{{end}}')"
	[[ "${CLIENT_GO}" =~ ^v0\.([0-9]+)\.[0-9]+$ ]] ||
		die "unexpected k8s.io/client-go version '${CLIENT_GO}' (want v0.MINOR.PATCH)"
	HELM_K8S_MINOR="${BASH_REMATCH[1]}"
	HELM_WANT_STAMP="format=${stamp_format} helm=${HELM_VERSION} client-go=${CLIENT_GO}"
}

helm_up_to_date() {
	[[ "${FORCE:-0}" != 1 && -f "${HELM_STAMP}" && "$(cat "${HELM_STAMP}")" == "${HELM_WANT_STAMP}" && -x "${HELM_OUT}" ]]
}

build_helm() {
	local out="${HELM_OUT}" stamp="${HELM_STAMP}"
	helm_versions
	local helm_version="${HELM_VERSION}" client_go="${CLIENT_GO}" k8s_minor="${HELM_K8S_MINOR}" want="${HELM_WANT_STAMP}"
	if helm_up_to_date; then
		log "up to date: ${out} (helm ${helm_version})"
		return 0
	fi
	log "building helm ${helm_version} (client-go ${client_go}) into ${out}: 2-3 min on 2 cores after the control plane, ~5 min from a cold build cache"
	local ldflags=(-s -w
		"-X" "helm.sh/helm/v3/internal/version.version=${helm_version}"
		"-X" "helm.sh/helm/v3/internal/version.gitTreeState=archive"
		"-X" "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1"
		"-X" "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${k8s_minor}"
		"-X" "helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1"
		"-X" "helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${k8s_minor}"
	)
	mkdir -p "${ROOT}/bin"
	local start=${SECONDS}
	# Same CGO_ENABLED and -trimpath as the control plane, so the packages
	# helm shares with kubectl come from the build cache.
	go_build "helm" "${ldflags[*]}" "${out}.tmp" helm.sh/helm/v3/cmd/helm
	mv -f "${out}.tmp" "${out}"
	printf '%s\n' "${want}" >"${stamp}"
	log "built in $((SECONDS - start))s: $("${out}" version --short 2>&1)"
}

# The local control plane (bin/k8s).
OUT_DIR="${ROOT}/bin/k8s"
STAMP="${OUT_DIR}/.stamp"
BINARIES=(etcd kube-apiserver kubectl)

# cp_versions sets K8S_VERSION, K8S_MAJOR, K8S_MINOR, ETCD_VERSION and
# WANT_STAMP.
cp_versions() {
	# Bump when the way the binaries are built changes (flags, names).
	local stamp_format=2
	K8S_VERSION="$(mod_field k8s.io/kubernetes '{{.Version}}')"
	ETCD_VERSION="$(mod_field go.etcd.io/etcd/server/v3 '{{.Version}}')"
	[[ "${K8S_VERSION}" =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]] ||
		die "unexpected k8s.io/kubernetes version '${K8S_VERSION}' (want vMAJOR.MINOR.PATCH)"
	K8S_MAJOR="${BASH_REMATCH[1]}"
	K8S_MINOR="${BASH_REMATCH[2]}"
	WANT_STAMP="format=${stamp_format} kubernetes=${K8S_VERSION} etcd=${ETCD_VERSION}"
}

all_present() {
	local b
	for b in "${BINARIES[@]}"; do
		[[ -x "${OUT_DIR}/${b}" ]] || return 1
	done
}

cp_up_to_date() {
	[[ "${FORCE:-0}" != 1 && -f "${STAMP}" && "$(cat "${STAMP}")" == "${WANT_STAMP}" ]] && all_present
}

# plan [WHO]: one line on stdout, what `make envtest helm` (and
# controller-gen) would build and for how long.
plan() {
	local who="${1:-build-tools}" todo=() done=() progress=""
	cp_versions
	helm_versions
	if [[ -n "${CONTROLLER_GEN_BIN:-}" && ! -x "${CONTROLLER_GEN_BIN}" ]]; then
		todo+=("controller-gen (about a minute)")
	fi
	if cp_up_to_date; then
		done+=("the control plane (bin/k8s)")
	else
		todo+=("the control plane into bin/k8s (etcd, kube-apiserver and kubectl ${K8S_VERSION}: ~10 min on 2 cores from a cold build cache)")
		progress=", with a progress line every ${PROGRESS_INTERVAL:-30}s"
	fi
	if helm_up_to_date; then
		done+=("helm (bin/helm)")
	elif cp_up_to_date; then
		todo+=("helm into bin/helm (2-3 min on 2 cores, ~5 min from a cold build cache)")
		progress=", with a progress line every ${PROGRESS_INTERVAL:-30}s"
	else
		todo+=("helm into bin/helm (2-3 min more)")
	fi
	if [[ "${PLAN_NODE:-0}" == 1 ]]; then
		node_versions
		if node_up_to_date; then
			done+=("the node (bin/node)")
		elif cp_up_to_date; then
			todo+=("the node into bin/node (kubelet, kube-proxy, kube-controller-manager and kube-scheduler ${K8S_VERSION}: ~4 min on 2 cores, ~15 min from a cold build cache)")
			progress=", with a progress line every ${PROGRESS_INTERVAL:-30}s"
		else
			todo+=("the node into bin/node (kubelet, kube-proxy, kube-controller-manager and kube-scheduler: ~4 min more)")
		fi
	fi
	local line=""
	if ((${#todo[@]} > 0)); then
		line="about to build $(join "${todo[@]}")${progress}"
	fi
	if ((${#done[@]} > 0)); then
		local verb="is"
		((${#done[@]} == 1)) || verb="are"
		line="${line:+${line}; }$(join "${done[@]}") ${verb} up to date (stamps match)"
	fi
	if ((${#todo[@]} == 0)); then
		line="${line}, nothing long to build"
	fi
	printf '%s: %s\n' "${who}" "${line}"
}

# join A B C: "A, B and C".
join() {
	local n=$# out="" i=0 w
	for w in "$@"; do
		i=$((i + 1))
		if ((i == 1)); then
			out="${w}"
		elif ((i == n)); then
			out="${out} and ${w}"
		else
			out="${out}, ${w}"
		fi
	done
	printf '%s' "${out}"
}

# bin/golangci-lint (make lint), from its own module hack/tools/lint: its
# dependencies would fight the Kubernetes pins of hack/tools.
build_lint() {
	local out="${ROOT}/bin/golangci-lint" stamp="${ROOT}/bin/.golangci-lint.stamp" version want
	version="$(cd "${TOOLS_DIR}/lint" && go list -m -f '{{.Version}}' github.com/golangci/golangci-lint/v2)" ||
		die "cannot resolve golangci-lint in ${TOOLS_DIR}/lint/go.mod"
	want="format=1 golangci-lint=${version}"
	if [[ "${FORCE:-0}" != 1 && -f "${stamp}" && "$(cat "${stamp}")" == "${want}" && -x "${out}" ]]; then
		log "up to date: ${out} (golangci-lint ${version})"
		return 0
	fi
	log "building golangci-lint ${version} into ${out}: about 4 min on 2 cores from a cold build cache"
	mkdir -p "${ROOT}/bin"
	local start=${SECONDS}
	(cd "${TOOLS_DIR}/lint" && go_build "golangci-lint" "-s -w -X main.version=${version}" "${out}.tmp" github.com/golangci/golangci-lint/v2/cmd/golangci-lint)
	mv -f "${out}.tmp" "${out}"
	printf '%s\n' "${want}" >"${stamp}"
	log "built in $((SECONDS - start))s: $("${out}" version 2>&1)"
}

# k8s_ldflags sets K8S_LDFLAGS (after cp_versions): -s -w and the version
# information as kubernetes' hack/lib/version.sh sets it, so `kubectl
# version`, the API server's /version and the kubelet's node status report
# the real release (and kubectl does not warn about version skew). The module
# zip carries no git commit; buildDate is the release's date from the module
# proxy (reproducible, unlike "now").
k8s_ldflags() {
	local date pkg
	date="$(mod_field k8s.io/kubernetes '{{with .Time}}{{.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}')"
	date="${date:-1970-01-01T00:00:00Z}"
	K8S_LDFLAGS=(-s -w)
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		K8S_LDFLAGS+=(
			"-X" "${pkg}.gitVersion=${K8S_VERSION}"
			"-X" "${pkg}.gitMajor=${K8S_MAJOR}"
			"-X" "${pkg}.gitMinor=${K8S_MINOR}"
			"-X" "${pkg}.gitCommit="
			"-X" "${pkg}.gitTreeState=archive"
			"-X" "${pkg}.buildDate=${date}"
		)
	done
}

# The node (bin/node): what a real single-node cluster adds to the control
# plane. Same flags and module graph as the control plane, so the packages
# they share (client-go, apiserver libraries, most of k8s.io/kubernetes/pkg)
# come from the build cache.
NODE_DIR="${ROOT}/bin/node"
NODE_STAMP="${NODE_DIR}/.stamp"
NODE_BINARIES=(kubelet kube-proxy kube-controller-manager kube-scheduler)

# node_versions sets what cp_versions sets and NODE_WANT_STAMP.
node_versions() {
	# Bump when the way the binaries are built changes (flags, names).
	local stamp_format=1
	cp_versions
	NODE_WANT_STAMP="format=${stamp_format} kubernetes=${K8S_VERSION}"
}

node_up_to_date() {
	[[ "${FORCE:-0}" != 1 && -f "${NODE_STAMP}" && "$(cat "${NODE_STAMP}")" == "${NODE_WANT_STAMP}" ]] || return 1
	local b
	for b in "${NODE_BINARIES[@]}"; do
		[[ -x "${NODE_DIR}/${b}" ]] || return 1
	done
}

build_node() {
	node_versions
	if node_up_to_date; then
		log "up to date: ${NODE_DIR} (kubernetes ${K8S_VERSION})"
		return 0
	fi
	log "building kubelet, kube-proxy, kube-controller-manager and kube-scheduler ${K8S_VERSION} into ${NODE_DIR}: ~4 min on 2 cores after the control plane, ~15 min from a cold build cache (progress every ${PROGRESS_INTERVAL:-30}s)"
	k8s_ldflags
	mkdir -p "${NODE_DIR}"
	local tmp start=${SECONDS} b
	tmp="$(mktemp -d "${NODE_DIR}/.build.XXXXXX")"
	NODE_TMP="${tmp}"
	trap 'rm -rf "${NODE_TMP}"' EXIT
	# One `go build` so the four link steps share one compile graph.
	go_build "the node (kubelet, kube-proxy, kube-controller-manager, kube-scheduler)" "${K8S_LDFLAGS[*]}" "${tmp}/" \
		k8s.io/kubernetes/cmd/kubelet \
		k8s.io/kubernetes/cmd/kube-proxy \
		k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler
	for b in "${NODE_BINARIES[@]}"; do
		[[ -x "${tmp}/${b}" ]] || die "build produced no ${b}"
		mv -f "${tmp}/${b}" "${NODE_DIR}/${b}"
	done
	printf '%s\n' "${NODE_WANT_STAMP}" >"${NODE_STAMP}"
	log "built in $((SECONDS - start))s:"
	for b in "${NODE_BINARIES[@]}"; do
		"${NODE_DIR}/${b}" --version 2>&1 | sed -n "1s/^/[build-tools]   ${b}: /p" >&2
	done
}

case "${1:-control-plane}" in
control-plane) ;;
helm)
	build_helm
	exit 0
	;;
node)
	build_node
	exit 0
	;;
lint)
	build_lint
	exit 0
	;;
plan)
	plan "${2:-}"
	exit 0
	;;
*) die "unknown target '$1' (want control-plane, helm, node, lint or plan)" ;;
esac

cp_versions
if cp_up_to_date; then
	log "up to date: ${OUT_DIR} (kubernetes ${K8S_VERSION}, etcd ${ETCD_VERSION})"
	exit 0
fi

log "building kube-apiserver + kubectl ${K8S_VERSION} and etcd ${ETCD_VERSION} into ${OUT_DIR}"
log "a cold build takes ~10 minutes on 2 cores (progress every ${PROGRESS_INTERVAL:-30}s); later runs reuse the Go build cache"

k8s_ldflags
ldflags=("${K8S_LDFLAGS[@]}")
# etcd has no git SHA when built from the module zip; record the version.
ldflags+=("-X" "go.etcd.io/etcd/api/v3/version.GitSHA=${ETCD_VERSION}")

mkdir -p "${OUT_DIR}"
TMP_DIR="$(mktemp -d "${OUT_DIR}/.build.XXXXXX")"
trap 'rm -rf "${TMP_DIR}"' EXIT

start=${SECONDS}
# One `go build` so the three link steps share one compile graph. With -o DIR
# the etcd binary is named after the package: "server".
go_build "kube-apiserver, kubectl and etcd" "${ldflags[*]}" "${TMP_DIR}/" \
	k8s.io/kubernetes/cmd/kube-apiserver \
	k8s.io/kubernetes/cmd/kubectl \
	go.etcd.io/etcd/server/v3
mv "${TMP_DIR}/server" "${TMP_DIR}/etcd"

for b in "${BINARIES[@]}"; do
	[[ -x "${TMP_DIR}/${b}" ]] || die "build produced no ${b}"
	mv -f "${TMP_DIR}/${b}" "${OUT_DIR}/${b}"
done
# Drop the artifact of an earlier plain `go build -o bin/k8s/ ...` of etcd.
rm -f "${OUT_DIR}/server"
printf '%s\n' "${WANT_STAMP}" >"${STAMP}"

log "built in $((SECONDS - start))s:"
"${OUT_DIR}/kubectl" version --client 2>&1 | sed 's/^/[build-tools]   kubectl: /' >&2
"${OUT_DIR}/kube-apiserver" --version 2>&1 | sed 's/^/[build-tools]   kube-apiserver: /' >&2
"${OUT_DIR}/etcd" --version 2>&1 | sed -n "1s/^/[build-tools]   etcd: /p" >&2
