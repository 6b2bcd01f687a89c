package e2e

import (
	"context"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestGRPCExtAuthzBinary runs the binary with --grpc-auth-bind-address and
// checks what the flag wires: Authorization/Check answers with the same
// decision as /validate, the health service says SERVING, and from SIGTERM
// on it says NOT_SERVING while checks are still answered during
// --shutdown-delay.
func TestGRPCExtAuthzBinary(t *testing.T) {
	t.Parallel()
	token := newToken(t)
	secrets := &secretSet{}
	secrets.add(token)
	grpcAddr := freeAddr(t)
	p := startBinary(t, []string{"--standalone", "--grpc-auth-bind-address", grpcAddr, "--shutdown-delay=3s", "--shutdown-grace-period=2s"}, map[string]string{
		"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true",
		"REGISTRY_API_TOKEN":                 token,
	}, secrets, 30*time.Second)

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	client, health := authv3.NewAuthorizationClient(conn), healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	check := func(path string) (int32, string) {
		t.Helper()
		resp, err := client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "192.0.2.7"}}}},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Scheme: "https", Host: registryHost, Path: path,
				Headers: map[string]string{":authority": registryHost, ":path": path, "authorization": "Bearer " + token},
			}},
		}})
		if err != nil {
			t.Fatalf("Check %s: %v", path, err)
		}
		user := ""
		for _, h := range resp.GetOkResponse().GetHeaders() {
			if h.GetHeader().GetKey() == "x-user" {
				user = h.GetHeader().GetValue()
			}
		}
		return resp.GetStatus().GetCode(), user
	}
	if code, user := check("/api/servers"); code != int32(codes.OK) || user != staticUser {
		t.Errorf("static token on /api/servers: code %d, user %q", code, user)
	}
	if code, _ := check("/mcpserver/mcp"); code != int32(codes.Unauthenticated) {
		t.Errorf("static token on a gateway path: code %d, want UNAUTHENTICATED", code)
	}
	hr, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", hr, err)
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		hr, err = health.Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && hr.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health after SIGTERM: %v %v, want NOT_SERVING within 2 s", hr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _ := check("/api/servers"); code != int32(codes.OK) {
		t.Errorf("a check during --shutdown-delay: code %d, want OK", code)
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatal("the process did not exit after the shutdown delay and grace period")
	}
	if p.waitErr != nil {
		t.Errorf("exit: %v\n%s", p.waitErr, secrets.redact(p.Output()))
	}
}
