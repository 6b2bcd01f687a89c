package extauthz

import (
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
)

// ServiceName is the gRPC service Envoy calls, also a name the health
// service answers for.
const ServiceName = "envoy.service.auth.v3.Authorization"

// Server limits and keepalive settings, chosen for Envoy as the client:
//
//   - Envoy keeps one HTTP/2 connection per worker thread to each endpoint
//     and may ping it (a cluster's http2_protocol_options.connection_keepalive,
//     set by Istio and some gateways). grpc-go's default enforcement refuses
//     pings more often than every 5 minutes with GOAWAY "too_many_pings";
//     pings every 5 s or slower are allowed here, with or without streams.
//   - The server pings a connection idle for 30 s and closes it when no
//     answer comes in 10 s: an Envoy that went away without a FIN (a node
//     lost) does not hold the connection.
//   - Connections are closed after 5 minutes (grpc-go adds ±10 % jitter)
//     with a 30 s grace for checks in flight: Envoy reconnects at once, and
//     so a replica added by a scale-up gets its share of the checks instead
//     of none until every Envoy restarts.
//   - A CheckRequest carries headers only (no body is asked for): 1 MiB is
//     plenty; 1024 concurrent checks per connection bound the goroutines.
const (
	KeepaliveMinTime      = 5 * time.Second
	KeepaliveTime         = 30 * time.Second
	KeepaliveTimeout      = 10 * time.Second
	MaxConnectionAge      = 5 * time.Minute
	MaxConnectionAgeGrace = 30 * time.Second
	MaxRecvMsgSize        = 1 << 20
	MaxConcurrentStreams  = 1024
	ConnectionTimeout     = 5 * time.Second
)

// ServerOptions are the grpc.Server options above.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:                  KeepaliveTime,
			Timeout:               KeepaliveTimeout,
			MaxConnectionAge:      MaxConnectionAge,
			MaxConnectionAgeGrace: MaxConnectionAgeGrace,
		}),
		grpc.MaxRecvMsgSize(MaxRecvMsgSize),
		grpc.MaxConcurrentStreams(MaxConcurrentStreams),
		grpc.ConnectionTimeout(ConnectionTimeout),
	}
}

// NewServer returns a grpc.Server serving svc and gRPC health checking
// (grpc.health.v1.Health, SERVING for "" and ServiceName). Call the health
// server's Shutdown when the process begins to stop, so that a proxy that
// health-checks over gRPC stops sending before the server drains.
func NewServer(svc *Service, opts ...grpc.ServerOption) (*grpc.Server, *health.Server) {
	srv := grpc.NewServer(append(ServerOptions(), opts...)...)
	authv3.RegisterAuthorizationServer(srv, svc)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	return srv, hs
}
