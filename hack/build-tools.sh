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
# Versions come from hack/tools/go.mod. Each build is skipped when its stamp
# (bin/k8s/.stamp, bin/.helm.stamp) records the same versions and the
# binaries exist. A cold control-plane build takes about 10 minutes on 2
# cores. helm is a separate target so that `make envtest` does not wait for
# it; after the control plane it takes 2-3 minutes more, as it shares most
# packages (client-go, cli-runtime, kubectl) with kubectl through the build
# cache (same module graph, same flags). FORCE=1 rebuilds.
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

# bin/helm. Built like helm's own Makefile does: its version, and the
# Kubernetes version that `helm lint` (deprecations) and `helm template`
# (.Capabilities.KubeVersion) assume, from the client-go it is built with.
build_helm() {
	local out="${ROOT}/bin/helm" stamp="${ROOT}/bin/.helm.stamp"
	# Bump when the way the binary is built changes (flags, name).
	local stamp_format=1
	local helm_version client_go
	helm_version="$(mod_field helm.sh/helm/v3 '{{.Version}}')"
	client_go="$(mod_field k8s.io/client-go '{{with .Replace}}{{.Version}}{{else}}{{.Version}}{{end}}')"
	[[ "${client_go}" =~ ^v0\.([0-9]+)\.[0-9]+$ ]] ||
		die "unexpected k8s.io/client-go version '${client_go}' (want v0.MINOR.PATCH)"
	local k8s_minor="${BASH_REMATCH[1]}"
	local want="format=${stamp_format} helm=${helm_version} client-go=${client_go}"
	if [[ "${FORCE:-0}" != 1 && -f "${stamp}" && "$(cat "${stamp}")" == "${want}" && -x "${out}" ]]; then
		log "up to date: ${out} (helm ${helm_version})"
		return 0
	fi
	log "building helm ${helm_version} (client-go ${client_go}) into ${out}"
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
	CGO_ENABLED=0 go build -trimpath -ldflags "${ldflags[*]}" -o "${out}.tmp" helm.sh/helm/v3/cmd/helm
	mv -f "${out}.tmp" "${out}"
	printf '%s\n' "${want}" >"${stamp}"
	log "built in $((SECONDS - start))s: $("${out}" version --short 2>&1)"
}

case "${1:-control-plane}" in
control-plane) ;;
helm)
	build_helm
	exit 0
	;;
*) die "unknown target '$1' (want control-plane or helm)" ;;
esac

OUT_DIR="${ROOT}/bin/k8s"
STAMP="${OUT_DIR}/.stamp"
# Bump when the way the binaries are built changes (flags, names).
STAMP_FORMAT=2
K8S_VERSION="$(mod_field k8s.io/kubernetes '{{.Version}}')"
ETCD_VERSION="$(mod_field go.etcd.io/etcd/server/v3 '{{.Version}}')"

[[ "${K8S_VERSION}" =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]] ||
	die "unexpected k8s.io/kubernetes version '${K8S_VERSION}' (want vMAJOR.MINOR.PATCH)"
K8S_MAJOR="${BASH_REMATCH[1]}"
K8S_MINOR="${BASH_REMATCH[2]}"

WANT_STAMP="format=${STAMP_FORMAT} kubernetes=${K8S_VERSION} etcd=${ETCD_VERSION}"
BINARIES=(etcd kube-apiserver kubectl)

all_present() {
	local b
	for b in "${BINARIES[@]}"; do
		[[ -x "${OUT_DIR}/${b}" ]] || return 1
	done
}

if [[ "${FORCE:-0}" != 1 && -f "${STAMP}" && "$(cat "${STAMP}")" == "${WANT_STAMP}" ]] && all_present; then
	log "up to date: ${OUT_DIR} (kubernetes ${K8S_VERSION}, etcd ${ETCD_VERSION})"
	exit 0
fi

# The release's date from the module proxy (reproducible, unlike "now").
K8S_DATE="$(mod_field k8s.io/kubernetes '{{with .Time}}{{.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}')"
K8S_DATE="${K8S_DATE:-1970-01-01T00:00:00Z}"

log "building kube-apiserver + kubectl ${K8S_VERSION} and etcd ${ETCD_VERSION} into ${OUT_DIR}"
log "a cold build takes ~10 minutes on 2 cores; later runs reuse the Go build cache"

# Version information as kubernetes' hack/lib/version.sh sets it, so
# `kubectl version` and the API server's /version report the real release
# (and kubectl does not warn about version skew). The module zip carries no
# git commit; buildDate is the release's date, so the binaries are
# reproducible.
ldflags=(-s -w)
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=(
		"-X" "${pkg}.gitVersion=${K8S_VERSION}"
		"-X" "${pkg}.gitMajor=${K8S_MAJOR}"
		"-X" "${pkg}.gitMinor=${K8S_MINOR}"
		"-X" "${pkg}.gitCommit="
		"-X" "${pkg}.gitTreeState=archive"
		"-X" "${pkg}.buildDate=${K8S_DATE}"
	)
done
# etcd has no git SHA when built from the module zip; record the version.
ldflags+=("-X" "go.etcd.io/etcd/api/v3/version.GitSHA=${ETCD_VERSION}")

mkdir -p "${OUT_DIR}"
TMP_DIR="$(mktemp -d "${OUT_DIR}/.build.XXXXXX")"
trap 'rm -rf "${TMP_DIR}"' EXIT

start=${SECONDS}
# One `go build` so the three link steps share one compile graph. With -o DIR
# the etcd binary is named after the package: "server".
CGO_ENABLED=0 go build -trimpath -ldflags "${ldflags[*]}" -o "${TMP_DIR}/" \
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
