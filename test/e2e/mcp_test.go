package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/authtest"
	"github.com/registryauth/registry-auth-operator/test/e2e/nginxtest"
	"github.com/registryauth/registry-auth-operator/test/utils"
)

// requireNode returns the directory of the MCP client (test/e2e/mcpclient)
// with its npm packages installed (npm ci from the committed lockfile when
// they are missing). Without node or npm the test skips with the reason, or
// fails under CI=true, as nginxtest.Require does for nginx.
func requireNode(t *testing.T) string {
	t.Helper()
	skip := func(format string, args ...any) {
		t.Helper()
		if nginxtest.InCI() {
			t.Fatalf("CI=true, nothing may be skipped: "+format, args...)
		}
		t.Skipf("skipping, this test needs node and npm (node 20 or later): "+format, args...)
	}
	for _, bin := range []string{"node", "npm"} {
		if _, err := exec.LookPath(bin); err != nil {
			skip("%v", err)
		}
	}
	root, err := utils.FindRepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "test", "e2e", "mcpclient")
	npmOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "sdk", "package.json")); err == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			npmErr = err.Error() + ": " + strings.TrimSpace(string(out))
		}
	})
	if npmErr != "" {
		skip("npm ci in %s failed: %s", dir, npmErr)
	}
	return dir
}

var (
	npmOnce sync.Once
	npmErr  string
)

// mcpClientResult is what client.mjs prints.
type mcpClientResult struct {
	Status              int               `json:"status"`
	WWWAuthenticate     string            `json:"wwwAuthenticate"`
	ResourceMetadataURL string            `json:"resourceMetadataUrl"`
	Scope               string            `json:"scope"`
	Metadata            map[string]any    `json:"metadata"`
	ServerVersion       map[string]string `json:"serverVersion"`
}

// mcpUpstream is the MCP server behind the gateway path and the metadata
// behind the public path, as far as the client needs them: the protected
// resource metadata (RFC 9728), and an MCP server that answers initialize
// (JSON, no session) and accepts notifications (202), as the Streamable
// HTTP transport of the MCP spec allows.
type mcpUpstream struct {
	resource, issuer string

	mu   sync.Mutex
	seen []string // "METHOD path user"
}

func (u *mcpUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.seen = append(u.seen, r.Method+" "+r.URL.Path+" "+r.Header.Get("X-User"))
	u.mu.Unlock()
	switch {
	case strings.HasPrefix(r.URL.Path, "/.well-known/oauth-protected-resource/"):
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"resource": u.resource, "authorization_servers": []string{u.issuer},
			"scopes_supported": []string{"mcp:tools"}, "bearer_methods_supported": []string{"header"},
		})
	case r.URL.Path == "/mcpserver/fininfo/mcp" && r.Method == http.MethodPost:
		var msg struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				ProtocolVersion string `json:"protocolVersion"`
			} `json:"params"`
		}
		if err := json.NewDecoder(r.Body).Decode(&msg); err != nil || r.Header.Get("X-User") != "alice" {
			http.Error(w, "bad request or no identity", http.StatusBadRequest)
			return
		}
		if len(msg.ID) == 0 { // a notification
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": msg.ID, "result": map[string]any{
			"protocolVersion": msg.Params.ProtocolVersion, "capabilities": map[string]any{"tools": map[string]any{}},
			"serverInfo": map[string]any{"name": "fininfo", "version": "1.0.0"},
		}})
	default:
		w.WriteHeader(http.StatusMethodNotAllowed) // no SSE stream
	}
}

// TestMCPTypeScriptSDK points the MCP TypeScript SDK at a gateway path
// through a real nginx (the ingress-nginx auth-url shape) in front of the
// binary in standalone mode with a public well-known path and a protected
// resource metadata template: the SDK reads resource_metadata from the 401,
// fetches the metadata from the public path, and connects with a token.
func TestMCPTypeScriptSDK(t *testing.T) {
	t.Parallel()
	nginxtest.Require(t)
	dir := requireNode(t)

	issuer := authtest.NewIssuer(t)
	authAddr := freeAddr(t)
	up := &mcpUpstream{issuer: issuer.URL()}
	ng := nginxtest.Start(t, nginxtest.Options{AuthURL: "http://" + authAddr + "/validate", Upstream: up})
	ngURL, err := url.Parse(ng.URL())
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ngURL.Host)
	serverURL := ng.URL() + "/mcpserver/fininfo/mcp"
	up.resource = serverURL
	startBinary(t, []string{"--standalone", "--auth-bind-address", authAddr, "--shutdown-grace-period=2s"}, map[string]string{
		"OIDC_ISSUER_URL": issuer.URL(),
		"OIDC_CLIENT_ID":  "mcp-gateway",
		"PUBLIC_PATHS":    "/.well-known/oauth-protected-resource",
		// {host} has no port: the nginx port is written in.
		"MCP_RESOURCE_METADATA_URL": "{scheme}://{host}:" + port + "/.well-known/oauth-protected-resource{path}",
		"MCP_SCOPES":                "mcp:tools",
	}, &secretSet{}, 30*time.Second)

	now := time.Now()
	claims := issuer.Claims("mcp-gateway", "alice", []string{"mcp-users"}, time.Hour)
	claims["iat"], claims["nbf"], claims["exp"] = now.Unix(), now.Unix(), now.Add(time.Hour).Unix()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "client.mjs", serverURL)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "MCP_TOKEN="+issuer.Sign(claims), "NO_PROXY=127.0.0.1", "no_proxy=127.0.0.1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node client.mjs: %v\nstdout: %s\nstderr: %s", err, out, stderr.String())
	}
	var got mcpClientResult
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("client output %q: %v", out, err)
	}
	t.Logf("the SDK saw: %s", out)

	wantMetadataURL := "http://127.0.0.1:" + port + "/.well-known/oauth-protected-resource/mcpserver/fininfo/mcp"
	if got.Status != http.StatusUnauthorized {
		t.Errorf("first request: %d, want 401", got.Status)
	}
	if got.ResourceMetadataURL != wantMetadataURL {
		t.Errorf("extractWWWAuthenticateParams found resource_metadata %q, want %q (WWW-Authenticate: %q)", got.ResourceMetadataURL, wantMetadataURL, got.WWWAuthenticate)
	}
	if got.Scope != "mcp:tools" {
		t.Errorf("scope %q, want mcp:tools", got.Scope)
	}
	if got.Metadata["resource"] != serverURL {
		t.Errorf("discoverOAuthProtectedResourceMetadata got %v, want the resource %s", got.Metadata, serverURL)
	}
	if got.ServerVersion["name"] != "fininfo" {
		t.Errorf("the SDK client connected to %v, want fininfo", got.ServerVersion)
	}
	up.mu.Lock()
	seen := append([]string(nil), up.seen...)
	up.mu.Unlock()
	wantSeen := []string{
		"GET /.well-known/oauth-protected-resource/mcpserver/fininfo/mcp ", // public: no identity
		"POST /mcpserver/fininfo/mcp alice",                                // initialize
		"POST /mcpserver/fininfo/mcp alice",                                // notifications/initialized
	}
	for _, w := range wantSeen {
		found := false
		for i, s := range seen {
			if s == w {
				found = true
				seen = append(seen[:i], seen[i+1:]...)
				break
			}
		}
		if !found {
			t.Errorf("the upstream did not see %q (saw %q)", w, up.seen)
		}
	}
}
