#!/usr/bin/env bash
# Copies the CustomResourceDefinitions of the ingress controllers that the
# samples and tests use into bin/crds/, so tests can install them into
# envtest next to the project's own (config/crd/bases):
#
#   Traefik        github.com/traefik/traefik/v3   traefik.io_*.yaml (Middleware,
#                                                  IngressRoute, ...)
#   Envoy Gateway  github.com/envoyproxy/gateway   SecurityPolicy
#   Gateway API    sigs.k8s.io/gateway-api         the experimental channel CRDs (a
#                                                  superset of the standard channel:
#                                                  HTTPRoute's ExternalAuth filter,
#                                                  GEP-1494, is experimental)
#   Istio          istio.io/api                    AuthorizationPolicy and the other
#                                                  Istio CRDs (one file)
#
# Not here: kgateway's GatewayExtension and F5 NGINX Ingress Controller's
# Policy and VirtualServer. Their modules (github.com/kgateway-dev/kgateway/v2,
# github.com/nginx/kubernetes-ingress) are refused by the Go module proxy
# (403), so their samples are applied only where RAP_EXTRA_CRDS names a
# directory holding those CRDs (see test/install).
#
# The files come from the modules' zips, fetched through the Go module proxy
# into the module cache (`go mod download`), so nothing but the proxy is
# needed. Only files that hold a CustomResourceDefinition are copied (the
# Gateway API's channels also ship a ValidatingAdmissionPolicy).
# bin/crds/ is flat, so it can be passed as one CRD directory.
#
# Skipped when bin/crds/.stamp records the same versions; FORCE=1 refetches.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${ROOT}/bin/crds"
STAMP="${OUT_DIR}/.stamp"
# Bump when the set of files copied changes.
STAMP_FORMAT=2

TRAEFIK_VERSION="${TRAEFIK_VERSION:-v3.7.13}"
ENVOY_GATEWAY_VERSION="${ENVOY_GATEWAY_VERSION:-v1.9.1}"
GATEWAY_API_VERSION="${GATEWAY_API_VERSION:-v1.6.3}"
ISTIO_API_VERSION="${ISTIO_API_VERSION:-v1.32.0}"

log() { printf '[fetch-crds] %s\n' "$*" >&2; }
die() { printf '[fetch-crds] ERROR: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "go is not on PATH"

WANT_STAMP="format=${STAMP_FORMAT} traefik=${TRAEFIK_VERSION} envoy-gateway=${ENVOY_GATEWAY_VERSION} gateway-api=${GATEWAY_API_VERSION} istio-api=${ISTIO_API_VERSION}"
if [[ "${FORCE:-0}" != 1 && -f "${STAMP}" && "$(cat "${STAMP}")" == "${WANT_STAMP}" ]]; then
	log "up to date: ${OUT_DIR} (${WANT_STAMP#format=* })"
	exit 0
fi

# `go mod download` outside any module: it neither needs nor touches a go.mod.
WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT

# module_dir MODULE@VERSION prints the module's extracted directory.
module_dir() {
	local json dir
	json="$(cd "${WORK}" && GOWORK=off go mod download -json "$1")" ||
		die "go mod download $1 failed: ${json}"
	dir="$(printf '%s\n' "${json}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
	[[ -n "${dir}" && -d "${dir}" ]] || die "no module directory for $1 in: ${json}"
	printf '%s\n' "${dir}"
}

STAGE="${WORK}/crds"
mkdir -p "${STAGE}"
copied=0

# copy_crds DIR GLOB...: copies the matching files that hold a CRD.
copy_crds() {
	local dir="$1" pattern f n=0
	shift
	[[ -d "${dir}" ]] || die "missing directory ${dir}"
	for pattern in "$@"; do
		for f in "${dir}"/${pattern}; do
			[[ -f "${f}" ]] || die "no file matches ${dir}/${pattern}"
			grep -q '^kind: CustomResourceDefinition' "${f}" || continue
			[[ ! -e "${STAGE}/$(basename "${f}")" ]] || die "two CRD files named $(basename "${f}")"
			# The module cache is read-only; the copies need not be.
			install -m 0644 "${f}" "${STAGE}/"
			n=$((n + 1))
		done
	done
	((n > 0)) || die "no CRD in ${dir} ($*)"
	copied=$((copied + n))
}

dir="$(module_dir "github.com/traefik/traefik/v3@${TRAEFIK_VERSION}")"
copy_crds "${dir}/docs/content/reference/dynamic-configuration" 'traefik.io_*.yaml'
for want in traefik.io_middlewares.yaml traefik.io_ingressroutes.yaml; do
	[[ -f "${STAGE}/${want}" ]] || die "traefik ${TRAEFIK_VERSION} has no ${want}"
done

dir="$(module_dir "github.com/envoyproxy/gateway@${ENVOY_GATEWAY_VERSION}")"
copy_crds "${dir}/charts/gateway-helm/charts/crds/crds/generated" 'gateway.envoyproxy.io_securitypolicies.yaml'

dir="$(module_dir "sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION}")"
copy_crds "${dir}/config/crd/experimental" '*.yaml'
for want in gateway.networking.k8s.io_gateways.yaml gateway.networking.k8s.io_httproutes.yaml; do
	[[ -f "${STAGE}/${want}" ]] || die "gateway-api ${GATEWAY_API_VERSION} has no ${want}"
done
grep -q 'externalAuth:' "${STAGE}/gateway.networking.k8s.io_httproutes.yaml" ||
	die "gateway-api ${GATEWAY_API_VERSION}'s experimental HTTPRoute has no ExternalAuth filter"

dir="$(module_dir "istio.io/api@${ISTIO_API_VERSION}")"
copy_crds "${dir}/kubernetes" 'customresourcedefinitions.gen.yaml'
mv "${STAGE}/customresourcedefinitions.gen.yaml" "${STAGE}/istio.io_customresourcedefinitions.gen.yaml"
grep -q 'name: authorizationpolicies.security.istio.io' "${STAGE}/istio.io_customresourcedefinitions.gen.yaml" ||
	die "istio.io/api ${ISTIO_API_VERSION} has no AuthorizationPolicy CRD"

# Replace the directory's content only once everything was found.
mkdir -p "${OUT_DIR}"
rm -f "${OUT_DIR}"/*.yaml "${OUT_DIR}"/*.yml "${OUT_DIR}"/*.json "${STAMP}"
cp "${STAGE}"/*.yaml "${OUT_DIR}/"
printf '%s\n' "${WANT_STAMP}" >"${STAMP}"
log "copied ${copied} CRD files into ${OUT_DIR} (${WANT_STAMP#format=* })"
