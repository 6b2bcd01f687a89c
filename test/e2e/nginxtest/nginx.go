// Package nginxtest runs a real nginx (Debian's package) configured the way
// ingress-nginx renders an Ingress carrying the
// `nginx.ingress.kubernetes.io/auth-url` annotation, in front of an echo
// upstream, so end-to-end tests can exercise the auth service exactly as the
// ingress controller calls it. See nginx.conf.tmpl for the mirrored
// ingress-nginx source and what was left out.
package nginxtest

import (
	"bytes"
	"cmp"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/authtest"
	"github.com/registryauth/registry-auth-operator/test/utils"
)

//go:embed nginx.conf.tmpl
var confTemplate string

var confTmpl = template.Must(template.New("nginx.conf").Option("missingkey=error").Parse(confTemplate))

// DefaultResponseHeaders is the auth-response-headers list used when
// Options.ResponseHeaders is nil.
var DefaultResponseHeaders = []string{"X-User", "X-Username", "X-Client-Id", "X-Scopes", "X-Groups", "X-Auth-Method"}

const (
	// DefaultBodySize is ingress-nginx's default proxy-body-size.
	DefaultBodySize = "1m"

	// serverName is the server_name of the catch-all server; ingress-nginx
	// renders "_" for rules without a host.
	serverName = "_"
	// ingressPath/pathType of the single Ingress rule that is mirrored.
	ingressPath = "/"
	pathType    = "Prefix"

	healthHost = "nginxtest-health.invalid"

	// echoMarker is set by the echo upstream on every response so that Do
	// can tell an upstream answer from one nginx produced itself.
	echoMarker = "X-Nginxtest-Echo"

	// auth-keepalive, auth-keepalive-requests, auth-keepalive-timeout.
	keepaliveConnections = 32
	keepaliveRequests    = 1000
	keepaliveTimeout     = 60

	startAttempts = 5
	startTimeout  = 15 * time.Second
	stopTimeout   = 10 * time.Second
)

// Options configure one nginx in front of an echo upstream.
type Options struct {
	// AuthURL is the auth service URL nginx calls for each request, e.g.
	// "http://127.0.0.1:8888/validate" or ".../validate/default/registry".
	// Like ingress-nginx, the URL is used in `set $target ...; proxy_pass
	// $target;`, so its host must be an IP literal (there is no resolver).
	AuthURL string
	// ResponseHeaders are copied from the auth response to the upstream
	// request (ingress-nginx auth-response-headers). Default:
	// DefaultResponseHeaders. An empty non-nil slice copies none.
	ResponseHeaders []string
	// Keepalive mirrors ingress-nginx's auth-keepalive (an upstream block with
	// keepalive connections to the auth service). Default off. See
	// nginx.conf.tmpl for how this differs from ingress-nginx's Lua variant.
	Keepalive bool
	// KeepaliveConnections is auth-keepalive's value, the idle connections
	// nginx keeps to the auth service (default 32). Past it, nginx closes
	// the connections a burst opened: a pool smaller than the checks in
	// flight costs connections whatever the auth service does.
	KeepaliveConnections int
	// ProxyBodySize mirrors ingress-nginx's proxy-body-size
	// (client_max_body_size). Default "1m" as in ingress-nginx; "0" disables
	// the limit (what registry Ingresses usually set).
	ProxyBodySize string
	// RegistryAPILocation adds the MCP Gateway Registry's own nginx
	// `location /api/` (upstream docker/nginx_rev_proxy_http_only.conf): it
	// sets $registry_api_auth to "1", which the auth location sends as
	// X-Registry-Api-Auth (the request for a hop token; every other
	// location sends none, whatever the client sent), and forwards the auth
	// answer's X-User, X-Username, X-Client-Id, X-Scopes, X-Auth-Method,
	// X-Groups and X-Internal-Token-Registry to the upstream. Other paths
	// keep the ingress-nginx location.
	RegistryAPILocation bool
	// Registry, when set, makes the upstream answer requests under /api/ as
	// the MCP Gateway Registry does (authtest.RegistryVerifier.Check): the
	// identity from a hop token that verifies, 401 for a token that does
	// not, and 401 for identity headers without a token. The Echo carries
	// what it decided.
	Registry *authtest.RegistryVerifier
	// AuthSelf makes the auth location answer 200 itself (`return 200;`)
	// instead of calling an auth service: not something ingress-nginx
	// renders, but the limit of auth_request on the machine, which
	// `make bench` measures. AuthURL and Keepalive must be unset.
	AuthSelf bool
	// Upstream, when set, answers every request that reaches the upstream
	// instead of the echo (they are still counted by UpstreamHits).
	Upstream http.Handler
	// PassInvalidHeaders mirrors ingress-nginx's ignore-invalid-headers:
	// "false" (ignore_invalid_headers off): header names with characters
	// other than letters, digits and '-' are passed on, to the auth
	// service too, instead of dropped. Default on, as ingress-nginx.
	PassInvalidHeaders bool
}

// Echo is what the upstream saw: method, path (with query), and the request
// headers (plus the Host header and the body, which Go keeps apart).
type Echo struct {
	Method string      `json:"method"`
	URI    string      `json:"uri"`
	Host   string      `json:"host"`
	Header http.Header `json:"header"`
	Body   string      `json:"body"`
	// Registry is what the upstream, as the registry (Options.Registry),
	// made of a request under /api/; its Status is the answer's.
	Registry *authtest.RegistryIdentity `json:"registry,omitempty"`
}

// Nginx is a running nginx (the one Lookup finds, usually Debian's
// /usr/sbin/nginx) bound to 127.0.0.1 with an echo upstream.
type Nginx struct {
	logf    func(format string, args ...any)
	bin     string
	data    *confData
	confDir string
	addr    string
	config  string

	echo     *httptest.Server
	hits     atomic.Int64
	registry *authtest.RegistryVerifier
	upstream http.Handler

	client *http.Client

	cmd    *exec.Cmd
	exited chan struct{}
	output *syncBuffer

	stopOnce sync.Once
}

// Start skips tb when there is no usable nginx, or fails it under CI=true
// (see Require). Otherwise it writes the config into tb.TempDir(), starts the echo upstream
// (httptest on 127.0.0.1) and nginx with -p <dir> -c <conf> -g "daemon off;",
// waits until it serves, and registers cleanup (graceful quit, then kill;
// error.log and access.log are dumped into tb.Log when the test failed).
func Start(tb testing.TB, opts Options) *Nginx {
	tb.Helper()

	bin := Require(tb)
	n, err := prepare(bin, opts, tb.TempDir(), tb.Logf)
	if err != nil {
		tb.Fatalf("nginxtest: %v", err)
	}
	tb.Cleanup(n.echo.Close)
	// Runs after the nginx cleanup below (cleanups are LIFO), so the logs
	// include the shutdown.
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("nginxtest: config %s\n%s", n.confPath(), n.config)
			tb.Logf("nginxtest: error.log:\n%s", n.ErrorLog())
			tb.Logf("nginxtest: access.log:\n%s", readFile(filepath.Join(n.confDir, "access.log")))
			if n.output != nil && n.output.Len() > 0 {
				tb.Logf("nginxtest: nginx stdout/stderr:\n%s", n.output.String())
			}
		}
	})
	if err := n.start(); err != nil {
		tb.Fatalf("nginxtest: starting nginx: %v\nerror.log:\n%s", err, n.ErrorLog())
	}
	tb.Cleanup(n.stop)
	return n
}

// Launch is Start without a test, for programs such as `make bench`: it
// runs the nginx Lookup finds (an error when there is none) with its config,
// logs and temp files in dir, which must exist. logf, if not nil, gets the
// few messages Start sends to the test's log. The caller stops it with
// Close.
func Launch(opts Options, dir string, logf func(format string, args ...any)) (*Nginx, error) {
	bin, err := Lookup()
	if err != nil {
		return nil, err
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	n, err := prepare(bin, opts, dir, logf)
	if err != nil {
		return nil, err
	}
	if err := n.start(); err != nil {
		n.echo.Close()
		return nil, fmt.Errorf("starting nginx: %w\nerror.log:\n%s", err, n.ErrorLog())
	}
	return n, nil
}

// Close stops a Launched nginx (graceful quit, then kill) and its echo
// upstream.
func (n *Nginx) Close() {
	n.stop()
	n.echo.Close()
}

// Pid is the nginx master's process id.
func (n *Nginx) Pid() int { return n.cmd.Process.Pid }

// prepare renders nothing yet: it checks opts and starts the echo upstream.
func prepare(bin string, opts Options, dir string, logf func(string, ...any)) (*Nginx, error) {
	data, err := newConfData(opts)
	if err != nil {
		return nil, err
	}
	n := &Nginx{
		logf:     logf,
		bin:      bin,
		confDir:  dir,
		data:     data,
		registry: opts.Registry,
		upstream: opts.Upstream,
		client: &http.Client{
			Transport: &http.Transport{
				Proxy:               nil, // never route 127.0.0.1 through $HTTP_PROXY
				DisableCompression:  true,
				MaxIdleConnsPerHost: 4,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Timeout:       60 * time.Second,
		},
	}
	n.echo = httptest.NewServer(http.HandlerFunc(n.serveEcho))
	data.EchoAddr = n.echo.Listener.Addr().String()
	data.Dir = n.confDir
	if os.Geteuid() == 0 {
		// Workers of a root master run as "nobody" unless told otherwise;
		// keep them as the current user so they can use the temp dir.
		data.User, data.Group = currentUserGroup()
	}
	return n, nil
}

// start launches nginx on a free port, trying another when the port was
// taken in between.
func (n *Nginx) start() error {
	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		n.data.Port = port
		lastErr = n.launch(n.data)
		if lastErr == nil {
			return nil
		}
		if !errors.Is(lastErr, errAddrInUse) {
			break
		}
		n.logf("nginxtest: port %d was taken before nginx could bind it, retrying", port)
	}
	return lastErr
}

// URL is nginx's base URL, e.g. http://127.0.0.1:PORT.
func (n *Nginx) URL() string { return "http://" + n.addr }

// Do sends a request through nginx and, when nginx passed it to the upstream,
// decodes the echo; it returns the status code, the echo (nil when nginx
// answered itself, e.g. 401/403/500) and the response body.
//
// The request always goes to nginx: the URL's scheme and host are replaced by
// nginx's, path and query are kept. The Host header is req.Host, which
// http.NewRequest sets from the URL, so
// http.NewRequest("GET", "http://registry.example.test/v2/", nil) reaches
// nginx with "Host: registry.example.test". Redirects are not followed.
func (n *Nginx) Do(req *http.Request) (status int, echo *Echo, body []byte, err error) {
	r := req.Clone(req.Context())
	u := *req.URL
	u.Scheme = "http"
	u.Host = n.addr
	u.User = nil
	r.URL = &u
	if r.Host == "" {
		r.Host = req.URL.Host
	}

	resp, err := n.client.Do(r)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, body, fmt.Errorf("reading response body: %w", err)
	}
	if resp.Header.Get(echoMarker) != "" {
		echo = &Echo{}
		if err := json.Unmarshal(body, echo); err != nil {
			return resp.StatusCode, nil, body, fmt.Errorf("decoding echo: %w", err)
		}
	}
	return resp.StatusCode, echo, body, nil
}

// Client is the HTTP client Do uses (no proxy, no redirects). Requests sent
// with it must target URL() themselves.
func (n *Nginx) Client() *http.Client { return n.client }

// UpstreamHits is how many requests reached the echo upstream.
func (n *Nginx) UpstreamHits() int64 { return n.hits.Load() }

// ErrorLog is the content of nginx's error.log.
func (n *Nginx) ErrorLog() string { return readFile(filepath.Join(n.confDir, "error.log")) }

// AccessLog is the content of nginx's access.log (main requests only; the
// auth location has access_log off like in ingress-nginx).
func (n *Nginx) AccessLog() string { return readFile(filepath.Join(n.confDir, "access.log")) }

// Config is the rendered nginx.conf.
func (n *Nginx) Config() string { return n.config }

// Dir is the directory holding nginx.conf, logs, pid and temp files.
func (n *Nginx) Dir() string { return n.confDir }

func (n *Nginx) serveEcho(w http.ResponseWriter, r *http.Request) {
	n.hits.Add(1)
	if n.upstream != nil {
		n.upstream.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	e := Echo{
		Method: r.Method,
		URI:    r.RequestURI,
		Host:   r.Host,
		Header: r.Header,
		Body:   string(body),
	}
	status := http.StatusOK
	if n.registry != nil && strings.HasPrefix(r.URL.Path, "/api/") {
		id := n.registry.Check(r.Header, time.Now())
		e.Registry, status = &id, id.Status
	}
	out, err := json.Marshal(e)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(echoMarker, "1")
	w.WriteHeader(status)
	_, _ = w.Write(out)
}

func (n *Nginx) confPath() string { return filepath.Join(n.confDir, "nginx.conf") }

var errAddrInUse = errors.New("address already in use")

func (n *Nginx) launch(data *confData) error {
	var buf bytes.Buffer
	if err := confTmpl.Execute(&buf, data); err != nil {
		return fmt.Errorf("rendering config: %w", err)
	}
	n.config = buf.String()
	if err := os.WriteFile(n.confPath(), buf.Bytes(), 0o644); err != nil {
		return err
	}
	// A retry must not see the previous attempt's bind error.
	_ = os.Remove(filepath.Join(n.confDir, "error.log"))

	n.addr = fmt.Sprintf("127.0.0.1:%d", data.Port)
	n.output = &syncBuffer{}
	cmd := exec.Command(n.bin,
		"-p", n.confDir+"/",
		"-c", n.confPath(),
		"-e", filepath.Join(n.confDir, "error.log"),
		"-g", "daemon off;",
	)
	cmd.Dir = n.confDir
	cmd.Stdout = n.output
	cmd.Stderr = n.output
	// Own process group: if the master has to be killed, its workers go too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	utils.DieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %s: %w", n.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	n.cmd, n.exited = cmd, exited

	probe := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-exited:
			logs := n.ErrorLog() + n.output.String()
			if strings.Contains(logs, "Address already in use") {
				return errAddrInUse
			}
			return fmt.Errorf("nginx exited during start-up (%v): %s", cmd.ProcessState, strings.TrimSpace(n.output.String()))
		default:
		}
		req, _ := http.NewRequest(http.MethodGet, "http://"+n.addr+"/", nil)
		req.Host = healthHost
		if resp, err := probe.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			n.kill()
			return fmt.Errorf("nginx did not serve on %s within %v", n.addr, startTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop quits nginx gracefully (SIGQUIT), then kills its process group.
func (n *Nginx) stop() {
	n.stopOnce.Do(func() {
		select {
		case <-n.exited:
			return
		default:
		}
		_ = n.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-n.exited:
			return
		case <-time.After(stopTimeout):
			n.logf("nginxtest: nginx (pid %d) did not quit within %v, killing it", n.cmd.Process.Pid, stopTimeout)
			n.kill()
		}
	})
}

func (n *Nginx) kill() {
	// Negative pid: the process group created with Setpgid, i.e. this
	// master and its workers only.
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-n.exited:
	case <-time.After(stopTimeout):
	}
}

// confData is what nginx.conf.tmpl renders.
type confData struct {
	Dir         string
	User, Group string
	Port        int
	EchoAddr    string
	ServerName  string
	HealthHost  string
	BodySize    string

	AuthPath         string // /_external-auth-Lw-Prefix
	AuthHost         string // Host header sent to the auth service
	AuthHostPort     string // host:port of the auth service
	AuthTarget       string // what `set $target` gets
	AuthUpstreamName string

	Keepalive            bool
	KeepaliveConnections int
	KeepaliveRequests    int
	KeepaliveTimeout     int

	ResponseHeaders []responseHeader

	RegistryAPILocation bool

	AuthSelf           bool
	PassInvalidHeaders bool
}

type responseHeader struct {
	Index int
	Name  string
	Var   string
}

var (
	headerName = regexp.MustCompile(`^[A-Za-z0-9-]+$`)
	bodySize   = regexp.MustCompile(`^[0-9]+[kKmMgG]?$`)
)

func newConfData(opts Options) (*confData, error) {
	if opts.AuthSelf {
		if opts.AuthURL != "" || opts.Keepalive {
			return nil, errors.New("Options.AuthSelf: nginx answers the checks itself, AuthURL and Keepalive must be unset")
		}
		// Rendered but not used: the auth location returns before them.
		opts.AuthURL = "http://127.0.0.1:9/validate"
	}
	if opts.AuthURL == "" {
		return nil, errors.New("Options.AuthURL is required")
	}
	if opts.KeepaliveConnections < 0 {
		return nil, fmt.Errorf("KeepaliveConnections %d is negative", opts.KeepaliveConnections)
	}
	// Everything ends up unquoted in `set $target ...;`: refuse what nginx
	// would interpret ($variables, ';', quotes, braces, whitespace).
	if strings.ContainsAny(opts.AuthURL, "$;'\"{}\\ \t\r\n#") {
		return nil, fmt.Errorf("AuthURL %q contains characters nginx would interpret", opts.AuthURL)
	}
	u, err := url.Parse(opts.AuthURL)
	if err != nil {
		return nil, fmt.Errorf("AuthURL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("AuthURL %q: scheme must be http or https", opts.AuthURL)
	}
	if net.ParseIP(u.Hostname()) == nil {
		return nil, fmt.Errorf("AuthURL %q: host must be an IP literal such as 127.0.0.1 (proxy_pass uses a variable and there is no resolver)", opts.AuthURL)
	}
	hostPort := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		hostPort = net.JoinHostPort(u.Hostname(), port)
	}

	size := opts.ProxyBodySize
	if size == "" {
		size = DefaultBodySize
	}
	if !bodySize.MatchString(size) {
		return nil, fmt.Errorf("ProxyBodySize %q is not an nginx size", size)
	}

	names := opts.ResponseHeaders
	if names == nil {
		names = DefaultResponseHeaders
	}
	var headers []responseHeader
	for i, h := range names {
		if !headerName.MatchString(h) {
			return nil, fmt.Errorf("ResponseHeaders[%d] %q is not a valid header name", i, h)
		}
		// buildAuthResponseHeaders: lower-case, '-' -> '_'.
		headers = append(headers, responseHeader{
			Index: i,
			Name:  h,
			Var:   strings.ReplaceAll(strings.ToLower(h), "-", "_"),
		})
	}

	// buildAuthLocation: "/_external-auth-" + base64url(path) without '=' +
	// "-" + pathType.
	authPath := fmt.Sprintf("/_external-auth-%s-%s",
		strings.ReplaceAll(base64.URLEncoding.EncodeToString([]byte(ingressPath)), "=", ""), pathType)

	d := &confData{
		ServerName:           serverName,
		HealthHost:           healthHost,
		BodySize:             size,
		AuthPath:             authPath,
		AuthHost:             u.Hostname(), // authreq: Host = authURL.Hostname()
		AuthHostPort:         hostPort,
		AuthTarget:           opts.AuthURL,
		Keepalive:            opts.Keepalive,
		KeepaliveConnections: cmp.Or(opts.KeepaliveConnections, keepaliveConnections),
		KeepaliveRequests:    keepaliveRequests,
		KeepaliveTimeout:     keepaliveTimeout,
		ResponseHeaders:      headers,
		RegistryAPILocation:  opts.RegistryAPILocation,
		AuthSelf:             opts.AuthSelf,
		PassInvalidHeaders:   opts.PassInvalidHeaders,
	}
	if opts.Keepalive {
		// buildAuthUpstreamName: "<server hostname>-<authPath[2:]>";
		// changeHostPort: the auth URL with host:port replaced by it.
		d.AuthUpstreamName = fmt.Sprintf("%s-%s", serverName, authPath[2:])
		t := *u
		t.Host = d.AuthUpstreamName
		d.AuthTarget = t.String()
	}
	return d, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}

func currentUserGroup() (string, string) {
	u, err := user.Current()
	if err != nil {
		return "root", "root"
	}
	group := u.Gid
	if g, err := user.LookupGroupId(u.Gid); err == nil {
		group = g.Name
	}
	return u.Username, group
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return string(b)
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}
