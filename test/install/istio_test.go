package install

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	"sigs.k8s.io/yaml"
)

// TestIstioMeshConfigSample checks the meshConfig that
// config/samples/istio-authorizationpolicy.yaml carries as a comment (the
// extension providers its AuthorizationPolicies name; istiod's Helm values,
// not a Kubernetes object) against Istio's own MeshConfig type: a field
// Istio does not know, or a value of the wrong type, fails.
func TestIstioMeshConfigSample(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, "config", "samples", "istio-authorizationpolicy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	begin, end := strings.Index(text, "# BEGIN meshConfig\n"), strings.Index(text, "# END meshConfig\n")
	if begin < 0 || end < begin {
		t.Fatal("the sample has no BEGIN meshConfig ... END meshConfig block")
	}
	var lines []string
	for _, l := range strings.Split(text[begin:end], "\n")[1:] {
		if l == "" {
			continue
		}
		if !strings.HasPrefix(l, "#") {
			t.Fatalf("line %q in the meshConfig block is not a comment", l)
		}
		lines = append(lines, strings.TrimPrefix(strings.TrimPrefix(l, "#"), " "))
	}
	var values struct {
		MeshConfig map[string]any `json:"meshConfig"`
	}
	if err := yaml.UnmarshalStrict([]byte(strings.Join(lines, "\n")), &values); err != nil {
		t.Fatalf("the meshConfig block is not YAML: %v\n%s", err, strings.Join(lines, "\n"))
	}
	js, err := yaml.Marshal(values.MeshConfig)
	if err != nil {
		t.Fatal(err)
	}
	jsonBytes, err := yaml.YAMLToJSON(js)
	if err != nil {
		t.Fatal(err)
	}
	var mc meshv1alpha1.MeshConfig
	if err := (protojson.UnmarshalOptions{}).Unmarshal(jsonBytes, &mc); err != nil {
		t.Fatalf("Istio's MeshConfig refuses the sample's meshConfig: %v\n%s", err, jsonBytes)
	}
	names := map[string]bool{}
	for _, p := range mc.GetExtensionProviders() {
		names[p.GetName()] = true
		if h := p.GetEnvoyExtAuthzHttp(); h != nil {
			for _, want := range []string{"authorization", "x-authorization", "cookie", "x-forwarded-for"} {
				if !contains(h.GetIncludeRequestHeadersInCheck(), want) {
					t.Errorf("%s: includeRequestHeadersInCheck lacks %s", p.GetName(), want)
				}
			}
			for _, want := range []string{"x-user", "x-username", "x-client-id", "x-scopes", "x-groups", "x-auth-method", "x-internal-token-registry"} {
				if !contains(h.GetHeadersToUpstreamOnAllow(), want) {
					t.Errorf("%s: headersToUpstreamOnAllow lacks %s", p.GetName(), want)
				}
			}
			if h.GetPort() != 8888 || h.GetPathPrefix() != "/ext-authz" {
				t.Errorf("%s: port %d, pathPrefix %q", p.GetName(), h.GetPort(), h.GetPathPrefix())
			}
		}
		if g := p.GetEnvoyExtAuthzGrpc(); g != nil && g.GetPort() != 9191 {
			t.Errorf("%s: port %d, want the grpc port 9191", p.GetName(), g.GetPort())
		}
	}
	if !names["registry-auth-http"] || !names["registry-auth-grpc"] {
		t.Errorf("extension providers %v, want registry-auth-http and registry-auth-grpc (the AuthorizationPolicies name them)", names)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
