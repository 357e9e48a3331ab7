package gateway

import (
	"time"

	"gopkg.in/yaml.v3"

	"github.com/weir-gateway/weir/filters"
)

// Config is what config.yaml says, decoded but not yet checked for meaning. Compile turns it into a
// Snapshot and is the only place that checks meaning. Defaults live in the `default` tags; README.md's
// config reference lists the same keys.
type Config struct {
	Server    ServerConfig               `yaml:"server"`
	Admin     AdminConfig                `yaml:"admin"`
	Reload    ReloadConfig               `yaml:"reload"`
	Log       LogConfig                  `yaml:"log"`
	Tracing   TracingConfig              `yaml:"tracing"`
	Redis     *RedisConfig               `yaml:"redis"`
	Upstreams map[string]*UpstreamConfig `yaml:"upstreams"`
	Defaults  DefaultsConfig             `yaml:"defaults"`
	Routes    []RouteConfig              `yaml:"routes"`

	// File is the path the config was read from; every Problem names it.
	File string `yaml:"-"`
}

// ServerConfig is the public listener.
type ServerConfig struct {
	// Listen is the TCP address of the plain-HTTP listener; "" when only TLS is served.
	Listen string `yaml:"listen" default:":8080"`
	// TLS, when present, opens an HTTPS listener that serves the same routes, filters and hygiene.
	TLS *TLSConfig `yaml:"tls"`
	// RedirectHTTPS makes the plain listener answer every well-formed request with a 308 to the same
	// URL on https://, instead of serving it. Needs tls.
	RedirectHTTPS bool `yaml:"redirect_https" default:"false"`
	// RedirectHTTPSPort is the port written in those redirects; 0 means tls.listen's port (omitted when
	// it is 443). Set it when clients reach the TLS listener through another port (a load balancer's 443).
	RedirectHTTPSPort int `yaml:"redirect_https_port" default:"0"`
	// ReadTimeout bounds reading one request's head and a buffered body, so slow clients are cut off.
	// A streamed upload (past buffer_requests) gets it for each read instead: a client sending nothing
	// for this long is cut, one sending steadily may take as long as it needs.
	ReadTimeout time.Duration `yaml:"read_timeout" default:"10s"`
	// WriteTimeout bounds writing one buffered response once the upstream has answered. A streamed
	// response (an event stream, a large download) gets it for each write instead: a client that takes
	// nothing for this long is cut, one that keeps reading may stream for hours.
	WriteTimeout time.Duration `yaml:"write_timeout" default:"30s"`
	// IdleTimeout is how long a client keep-alive connection may wait for its next request.
	IdleTimeout time.Duration `yaml:"idle_timeout" default:"90s"`
	// MaxHeaderBytes caps the request line plus headers; more gets 431.
	MaxHeaderBytes Size `yaml:"max_header_bytes" default:"16KiB"`
	// WriteBufferBytes is each client connection's write buffer. A response whose head and body fit
	// leaves in one system call; a larger one takes two (head with the start of the body, then the
	// rest), and a 4.2 KB response through fasthttp's default 4 KiB costs about a third more CPU. The
	// buffer is held while the connection idles unless reduce_memory_usage is on, hence 8 KiB rather
	// than more: it covers typical API responses.
	WriteBufferBytes Size `yaml:"write_buffer_bytes" default:"8KiB"`
	// MaxBodyBytes caps a request body; more gets 413.
	MaxBodyBytes Size `yaml:"max_body_bytes" default:"4MiB"`
	// BufferRequests: a request body up to this is read whole before it is forwarded (and may then
	// be retried); a larger one is streamed to the upstream as it arrives, so max_body_bytes may be
	// GiBs without using GiBs of memory, but it cannot be retried once its first bytes left.
	BufferRequests Size `yaml:"buffer_requests" default:"1MiB"`
	// ShutdownTimeout is how long in-flight requests may run after SIGTERM before the process exits.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout" default:"15s"`
	// ReduceMemoryUsage releases a keep-alive connection's read and write buffers while it is idle,
	// at some CPU cost per request: for gateways holding many idle clients.
	ReduceMemoryUsage bool `yaml:"reduce_memory_usage" default:"false"`
	// TrustedProxies are CIDRs (or single addresses) whose X-Forwarded-* headers are believed and
	// appended to; every other peer's are replaced.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// TLSConfig is the HTTPS listener. Everything but Listen can change on a reload; certificate and key
// files are also re-read by themselves when they change.
type TLSConfig struct {
	// Listen is the TCP address of the HTTPS listener.
	Listen string `yaml:"listen" default:":8443"`
	// Certificates are picked by SNI: a certificate naming the host exactly, then a wildcard covering
	// it, then the first one (also for clients without SNI).
	Certificates []CertificateConfig `yaml:"certificates"`
	// MinVersion is the oldest TLS version accepted: "1.2" or "1.3". TLS 1.0 and 1.1 are never offered.
	MinVersion string `yaml:"min_version" default:"1.2"`
	// ClientAuth asks clients for certificates: none, request (verify one if sent) or require.
	ClientAuth string `yaml:"client_auth" default:"none"`
	// ClientCAFile holds the PEM CAs that client certificates must chain to; needed by request and require.
	ClientCAFile string `yaml:"client_ca_file"`
	// HSTSMaxAge, when more than zero, adds Strict-Transport-Security: max-age=N to every HTTPS response.
	HSTSMaxAge time.Duration `yaml:"hsts_max_age" default:"0s"`
	// HSTSIncludeSubdomains adds includeSubDomains to that header.
	HSTSIncludeSubdomains bool `yaml:"hsts_include_subdomains" default:"false"`
	// SessionTickets lets clients resume sessions (a shorter handshake without a certificate
	// signature); false makes every new connection a full handshake, as nginx's ssl_session_tickets off.
	SessionTickets bool `yaml:"session_tickets" default:"true"`
}

// CertificateConfig is one certificate chain (leaf first) and its private key, PEM files whose paths
// are relative to the config file's directory.
type CertificateConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Name labels the certificate in metrics and GET /config; the default is cert_file as written.
	Name string `yaml:"name"`
}

// UpstreamTLSConfig is how a pool's https:// targets are dialled. Files rotate like the listener's.
type UpstreamTLSConfig struct {
	// CAFile holds the PEM CAs the targets' certificates must chain to; "" means the system's roots.
	CAFile string `yaml:"ca_file"`
	// ServerName is sent as SNI and must be in the targets' certificates; "" means each target's host.
	ServerName string `yaml:"server_name"`
	// CertFile and KeyFile are a client certificate presented to targets that ask (upstream mTLS).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// InsecureSkipVerify accepts any certificate from the targets. weir validate warns about it.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify" default:"false"`
}

// AdminConfig is the operators' listener: health, readiness, config status and reload.
type AdminConfig struct {
	// Listen is its TCP address; keep it on loopback or a private network. "" turns it off.
	Listen string `yaml:"listen" default:"127.0.0.1:9901"`
	// TokenFile holds a bearer token (16 characters or more; surrounding whitespace is ignored). When
	// set, every admin endpoint but /healthz and /readyz requires "Authorization: Bearer TOKEN".
	// Relative to the config file; read again at every reload.
	TokenFile string `yaml:"token_file"`
	// MetricsPublic lets /metrics answer without the token, for a Prometheus that has none.
	MetricsPublic bool `yaml:"metrics_public"`
}

// ReloadConfig says when weir re-reads its config file. Changes to it need a restart.
type ReloadConfig struct {
	// Watch re-reads the file when its directory changes: in-place writes, editors' rename-on-save,
	// and Kubernetes ConfigMap updates (a ..data symlink swap) all show up there.
	Watch bool `yaml:"watch" default:"true"`
	// Debounce is how long the directory must be quiet before the file is read, so that a burst of
	// events (truncate, write, rename) gives one reload of the finished file.
	Debounce time.Duration `yaml:"debounce" default:"250ms"`
	// Interval re-reads the file on a timer as well, for filesystems without change notification;
	// 0s turns it off. A file whose content did not change is not reloaded.
	Interval time.Duration `yaml:"interval" default:"0s"`
}

// LogConfig controls the process log (stderr) and the access log (stdout).
type LogConfig struct {
	// Level is the lowest level of gateway events written: debug, info, warn or error.
	Level string `yaml:"level" default:"info"`
	// Access turns the one-line-per-request access log on or off.
	Access bool `yaml:"access" default:"true"`
	// AccessSample logs one in this many successful (below 400) requests; errors are always logged.
	AccessSample int `yaml:"access_sample" default:"1"`
}

// TracingConfig exports OpenTelemetry traces: one server span per sampled request, sent in batches
// over OTLP/HTTP. W3C Trace Context is continued from the client and always passed upstream.
type TracingConfig struct {
	// OTLPEndpoint is the collector's OTLP/HTTP (protobuf) URL, like "http://127.0.0.1:4318"; a URL
	// without a path gets /v1/traces. Empty turns tracing off: weir then passes traceparent and
	// tracestate through untouched.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// SampleRatio is the share of requests traced among those that arrive without a parent; a request
	// with a valid traceparent follows its parent's sampled flag.
	SampleRatio float64 `yaml:"sample_ratio" default:"0.01"`
	// ServiceName is the service.name of weir's spans.
	ServiceName string `yaml:"service_name" default:"weir"`
	// Headers are sent with every export, like a hosted collector's API key. They are secrets to weir:
	// never logged nor shown by the admin API.
	Headers map[string]string `yaml:"headers"`
	// QueueSize bounds the spans waiting for export (about 1 KB each); when it is full, new spans are
	// dropped and counted in weir_tracing_spans_total{result="dropped"}.
	QueueSize int `yaml:"queue_size" default:"4096"`
	// BatchSize is the most spans sent in one export.
	BatchSize int `yaml:"batch_size" default:"512"`
	// BatchTimeout is the longest a span waits for its batch to fill.
	BatchTimeout time.Duration `yaml:"batch_timeout" default:"2s"`
	// ExportTimeout bounds one export; a batch that fails or times out is dropped, not retried.
	ExportTimeout time.Duration `yaml:"export_timeout" default:"5s"`
}

// RedisConfig is the Redis that replicas share: global rate limits keep their buckets there.
type RedisConfig struct {
	// Addrs are host:port addresses: one for a standalone Redis, several for the seeds of a Redis
	// Cluster.
	Addrs []string `yaml:"addrs"`
	// Username is for Redis ACLs; empty means the default user.
	Username string `yaml:"username"`
	// PasswordFile holds the password (surrounding white space ignored); the password is never
	// written in config.yaml itself.
	PasswordFile string `yaml:"password_file"`
	// DB is the database number (standalone Redis only).
	DB int `yaml:"db" default:"0"`
	// Timeout bounds each command: no request waits longer for Redis.
	Timeout time.Duration `yaml:"timeout" default:"50ms"`
	// RetryInterval is how often weir tries a Redis that failed; until one try succeeds, no request
	// waits for Redis at all.
	RetryInterval time.Duration `yaml:"retry_interval" default:"1s"`
	// KeyPrefix starts every key weir writes, so that several weir deployments can share one Redis.
	KeyPrefix string `yaml:"key_prefix" default:"weir:"`
	// TLS encrypts the connections to Redis.
	TLS RedisTLSConfig `yaml:"tls"`
}

// RedisTLSConfig is TLS to Redis.
type RedisTLSConfig struct {
	// Enabled turns TLS on.
	Enabled bool `yaml:"enabled" default:"false"`
	// CAFile is a PEM bundle of the CAs that sign Redis's certificate; empty means the system's.
	CAFile string `yaml:"ca_file"`
	// ServerName is the name checked in Redis's certificate; empty means the address's host.
	ServerName string `yaml:"server_name"`
}

// UpstreamConfig is one pool of interchangeable backend targets.
type UpstreamConfig struct {
	// Balancer picks a target per request: round_robin, weighted, least_request, hash or random.
	Balancer string `yaml:"balancer" default:"round_robin"`
	// HashKey is what the hash balancer hashes: client_ip, header:NAME, cookie:NAME or path.
	HashKey string `yaml:"hash_key"`
	// Targets are the backends, each an http:// or https:// URL with a host and port and no path.
	Targets []TargetConfig `yaml:"targets"`
	// ConnectTimeout bounds dialing one target.
	ConnectTimeout time.Duration `yaml:"connect_timeout" default:"1s"`
	// Timeout bounds one attempt, from writing the request to reading the end of the response.
	Timeout time.Duration `yaml:"timeout" default:"15s"`
	// MaxConnsPerTarget caps open connections to each target.
	MaxConnsPerTarget int `yaml:"max_conns_per_target" default:"512"`
	// ConnWaitTimeout is how long a request may wait for a free connection once MaxConnsPerTarget are
	// busy; after that it gets 503.
	ConnWaitTimeout time.Duration `yaml:"conn_wait_timeout" default:"100ms"`
	// IdleConnTimeout closes pooled connections idle this long. Keep it below the targets' own keep-alive
	// timeout (Node.js: 5s, nginx: 75s, Go: 90s) so weir never writes to a connection being closed.
	IdleConnTimeout time.Duration `yaml:"idle_conn_timeout" default:"4s"`
	// BufferResponses: a response body with a Content-Length up to this, or a chunked one that ends
	// within it, is read whole before it goes back through the route's filters (json needs it) and
	// leaves with an exact Content-Length. Larger bodies, and every event stream, are relayed as they
	// arrive. 0 streams every body.
	BufferResponses Size `yaml:"buffer_responses" default:"1MiB"`
	// StreamIdleTimeout cuts a streamed response (or upload) that moves no byte for this long. The
	// attempt timeout above bounds only the wait for the response head.
	StreamIdleTimeout time.Duration `yaml:"stream_idle_timeout" default:"5m"`
	// MaxResponseBytes caps any response body: a larger Content-Length gets 502, a streamed body
	// passing it is cut. 0: no cap.
	MaxResponseBytes Size `yaml:"max_response_bytes" default:"0"`
	// MaxResponseHeaderBytes caps the response status line plus headers; a larger head gets 502.
	// Each open connection to a target holds a read buffer of this size.
	MaxResponseHeaderBytes Size `yaml:"max_response_header_bytes" default:"16KiB"`
	// TLS is how https:// targets are dialled and verified.
	TLS UpstreamTLSConfig `yaml:"tls"`
	// HealthCheck, when set, checks every target actively. Targets start healthy.
	HealthCheck *HealthCheckConfig `yaml:"health_check"`
	// PassiveHealth ejects targets that fail requests in a row.
	PassiveHealth PassiveHealthConfig `yaml:"passive_health"`
	// Retries retries failed requests on other targets.
	Retries RetriesConfig `yaml:"retries"`
}

// HealthCheckConfig is an upstream's active health check.
type HealthCheckConfig struct {
	// Path is requested with GET on each target.
	Path string `yaml:"path" default:"/healthz"`
	// Interval is the time between checks of one target.
	Interval time.Duration `yaml:"interval" default:"5s"`
	// Timeout bounds one check.
	Timeout time.Duration `yaml:"timeout" default:"1s"`
	// HealthyThreshold passes in a row bring a failing target back.
	HealthyThreshold int `yaml:"healthy_threshold" default:"2"`
	// UnhealthyThreshold failures in a row take a target out of rotation.
	UnhealthyThreshold int `yaml:"unhealthy_threshold" default:"3"`
	// ExpectedStatuses pass the check; absent means any 2xx.
	ExpectedStatuses []int `yaml:"expected_statuses"`
}

// PassiveHealthConfig is outlier ejection.
type PassiveHealthConfig struct {
	// ConsecutiveFailures (connect errors, timeouts, 5xx) in a row eject a target; 0 turns it off.
	ConsecutiveFailures int `yaml:"consecutive_failures" default:"5"`
	// EjectionTime is the first ejection's length; each ejection in a row doubles it.
	EjectionTime time.Duration `yaml:"ejection_time" default:"30s"`
	// MaxEjectionTime caps the doubling.
	MaxEjectionTime time.Duration `yaml:"max_ejection_time" default:"5m"`
}

// RetriesConfig says which failed requests are tried again, on another target where there is one.
type RetriesConfig struct {
	// Attempts is the most tries per request, the first included; 1 turns retries off.
	Attempts int `yaml:"attempts" default:"2"`
	// On lists what is retried: connect_failure (any method when no connection could be made; for
	// idempotent methods also a connection closed before any response), timeout and HTTP statuses
	// (idempotent methods only: GET, HEAD, OPTIONS, PUT, DELETE).
	On []string `yaml:"on"`
	// BudgetRatio caps retries at this share of the upstream's requests over the last 10 seconds.
	BudgetRatio float64 `yaml:"budget_ratio" default:"0.2"`
	// MinRetriesPerSecond is allowed on top of the ratio, so that a quiet upstream can still retry.
	MinRetriesPerSecond int `yaml:"min_retries_per_second" default:"3"`
	// Deadline bounds all of a request's attempts together; absent means attempts × timeout.
	Deadline time.Duration `yaml:"deadline"`
}

// TargetConfig is one backend of a pool.
type TargetConfig struct {
	URL string `yaml:"url"`
	// Weight is the target's share under the weighted and hash balancers, 1 to 256.
	Weight int `yaml:"weight" default:"1"`
}

// DefaultsConfig holds settings every route inherits.
type DefaultsConfig struct {
	// Filters run before each route's own filters.
	Filters []FilterSpec `yaml:"filters"`
}

// RouteConfig sends matching requests to one upstream pool.
type RouteConfig struct {
	Name     string       `yaml:"name"`
	Match    MatchConfig  `yaml:"match"`
	Upstream string       `yaml:"upstream"`
	Filters  []FilterSpec `yaml:"filters"`
	// WebSocket says whether the route relays WebSocket upgrades.
	WebSocket WebSocketConfig `yaml:"websocket"`
	// Split, instead of Upstream, spreads the route's requests over several pools by weight;
	// SplitKey (client_ip, header:NAME, cookie:NAME) keeps a key on one pool.
	Split    []SplitEntry `yaml:"split"`
	SplitKey string       `yaml:"split_key"`
	// Timeout, when set, replaces the pool's per-attempt timeout for this route (a slow report
	// endpoint on a pool of fast ones).
	Timeout time.Duration `yaml:"timeout"`
}

// WebSocketConfig is a route's WebSocket relaying. A request with Connection: Upgrade and
// Upgrade: websocket runs the route's filters, then goes to a target with both kept; a 101 joins the
// two connections until either side closes.
type WebSocketConfig struct {
	// Enabled: false forwards an upgrade request as a plain one, its Upgrade stripped like any other
	// protocol's (h2c and the like always are).
	Enabled bool `yaml:"enabled" default:"true"`
	// IdleTimeout closes a tunnel through which no byte passed either way for this long.
	IdleTimeout time.Duration `yaml:"idle_timeout" default:"1h"`
}

// MatchConfig says which requests a route takes.
type MatchConfig struct {
	// Hosts are exact names or *.suffix wildcards, matched case-insensitively without the port.
	// Absent means any host.
	Hosts []string `yaml:"hosts"`
	// Path is a pattern: /static, /{name}, /{name?} (optional last segment), /{name:regex}, /{rest:*}.
	Path string `yaml:"path"`
	// Methods restricts the route to these methods; absent means any method.
	Methods []string `yaml:"methods"`
	// Headers, Query and Cookies are conditions that must all hold. Among routes with the same
	// hosts, path and method, those with more conditions are tried first, then file order.
	Headers []ValueMatch `yaml:"headers"`
	Query   []ValueMatch `yaml:"query"`
	Cookies []ValueMatch `yaml:"cookies"`
}

// FilterSpec is one entry of a filter list: a single key naming the filter, with its settings.
type FilterSpec = yaml.Node

// Size is a byte count written as an integer or with a KiB/MiB/GiB (or KB/MB/GB) suffix; filters
// use it too, so it lives in package filters.
type Size = filters.Size

// ParseSize reads "4096", "16KiB", "4MiB", "1GiB"; KB/MB/GB are read as the same powers of 1024.
func ParseSize(s string) (Size, error) { return filters.ParseSize(s) }
