package standalone

import (
	"testing"

	. "github.com/onsi/gomega"

	"github.com/registryauth/registry-auth-operator/authserver/policy"
)

func TestMCPEnv(t *testing.T) {
	g := NewWithT(t)
	e, err := ParseEnv(standaloneEnv(map[string]string{
		"PUBLIC_PATHS":                 "/.well-known/oauth-protected-resource, /health",
		"MCP_RESOURCE_METADATA_URL":    "https://{host}/.well-known/oauth-protected-resource{path}",
		"MCP_SCOPES":                   "mcp:tools, openid profile",
		"MCP_CHALLENGE_REGISTRY_PATHS": "true",
	}))
	g.Expect(err).NotTo(HaveOccurred())
	cfg := e.Config()
	g.Expect(cfg.PublicPaths).To(Equal([]string{"/.well-known/oauth-protected-resource", "/health"}))
	g.Expect(cfg.ProtectedResource).To(Equal(&policy.ProtectedResourceConfig{
		MetadataURL: "https://{host}/.well-known/oauth-protected-resource{path}", Scopes: []string{"mcp:tools", "openid", "profile"}, RegistryPaths: true}))
	_, probs := policy.Compile(cfg, policy.CompileOptions{})
	g.Expect(probs).To(BeEmpty())

	for name, env := range map[string]map[string]string{
		"a relative public path":          {"PUBLIC_PATHS": "well-known"},
		"a public path with dot segments": {"PUBLIC_PATHS": "/a/../b"},
		"scopes without a URL":            {"MCP_SCOPES": "x"},
		"a bad flag":                      {"MCP_RESOURCE_METADATA_URL": "https://x/y", "MCP_CHALLENGE_REGISTRY_PATHS": "maybe"},
	} {
		_, err := ParseEnv(standaloneEnv(env))
		g.Expect(err).To(HaveOccurred(), name)
	}
	// A template that does not compile is a problem: start-up stops.
	e, err = ParseEnv(standaloneEnv(map[string]string{"MCP_RESOURCE_METADATA_URL": "{path}"}))
	g.Expect(err).NotTo(HaveOccurred())
	_, probs = policy.Compile(e.Config(), policy.CompileOptions{})
	g.Expect(probs).To(HaveLen(1))
	g.Expect(startsAnyway(probs[0])).To(BeFalse())
}
