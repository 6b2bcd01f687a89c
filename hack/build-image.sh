#!/usr/bin/env bash
# Builds the project's container image and the local pause image without a
# container engine (make image), into OUT_DIR (default bin/image):
#
#   OUT_DIR/registry-auth.oci.tar   IMG (default localhost/registry-auth:dev),
#                                   from the last stage of ./Dockerfile
#   OUT_DIR/pause.oci.tar           PAUSE_IMG (default
#                                   localhost/registry-auth-pause:dev), from
#                                   hack/pause/Dockerfile
#
# plus the same as docker archives (*.docker.tar, for `docker load`). Each is
# an OCI image layout in a tar file (oci-archive), which `ctr -n k8s.io images
# import` reads. The binaries are built as the Dockerfile's builder stage
# builds them (CGO_ENABLED=0, -trimpath, -ldflags="-s -w"); hack/tools/image
# (its own Go module, github.com/google/go-containerregistry) follows the
# Dockerfile's last stage: FROM gcr.io/distroless/static:nonroot is written
# from Debian's CA bundle and distroless's users and groups, never pulled.
# Neither tag may be "latest" (the kubelet would try to pull it).
#
# Usage: hack/build-image.sh [OUT_DIR]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-${ROOT}/bin/image}"
IMG="${IMG:-localhost/registry-auth:dev}"
PAUSE_IMG="${PAUSE_IMG:-localhost/registry-auth-pause:dev}"

log() { printf '[image] %s\n' "$*" >&2; }

mkdir -p "${OUT}"
OUT="$(cd "${OUT}" && pwd)"
start=${SECONDS}
# The builder stage's /workspace, and the pause image's build context.
mkdir -p "${OUT}/builder" "${OUT}/pause"
(
	cd "${ROOT}"
	CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "${OUT}/builder/registry-auth" ./cmd
	CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "${OUT}/pause/pause" ./hack/pause
)
tool="${OUT}/.image-tool"
(cd "${ROOT}/hack/tools/image" && CGO_ENABLED=0 go build -trimpath -o "${tool}" .)

"${tool}" -dockerfile "${ROOT}/Dockerfile" -stage "builder:/workspace=${OUT}/builder" \
	-tag "${IMG}" -oci "${OUT}/registry-auth.oci.tar" -docker "${OUT}/registry-auth.docker.tar" |
	sed 's/^/[image] built /' >&2
"${tool}" -dockerfile "${ROOT}/hack/pause/Dockerfile" -context "${OUT}/pause" \
	-tag "${PAUSE_IMG}" -oci "${OUT}/pause.oci.tar" -docker "${OUT}/pause.docker.tar" |
	sed 's/^/[image] built /' >&2
log "wrote ${OUT}/registry-auth.oci.tar and ${OUT}/pause.oci.tar (and *.docker.tar) in $((SECONDS - start))s"
