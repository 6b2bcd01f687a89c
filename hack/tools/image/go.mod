// Image tools module: hack/tools/image writes the project's container image
// (and the local pause image) as OCI and docker archives without a container
// engine (make image), with github.com/google/go-containerregistry, kept
// apart from the product's go.mod and from the Kubernetes pins of hack/tools.
module github.com/registryauth/registry-auth-operator/hack/tools/image

go 1.26.0

require github.com/google/go-containerregistry v0.22.1

require (
	github.com/klauspost/compress v1.19.2 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.1 // indirect
	golang.org/x/sync v0.22.0 // indirect
)
