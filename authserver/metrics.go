package authserver

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
)

// Metrics are the auth service's Prometheus metrics. Register them with the
// registry the process serves (controller-runtime's metrics.Registry in both
// modes).
//
// Label values are bounded: policy is a loaded policy's key (series of a
// removed policy are deleted), method and reason come from fixed sets, and
// credential is "static", "federation", "session" or an API key name of a loaded policy.
//
// The two per-policy series every policy has, decisions and last load time,
// are kept in one counts block per policy (policyCounts) and turned into
// series when scraped, instead of a client_golang child per series: a block
// is one allocation without pointers, so a thousand policies add nothing
// for the garbage collector to scan, and a decision costs one map lookup and
// one atomic add. The rarer series (previous-token uses, brute-force
// refusals) are ordinary vectors.
type Metrics struct {
	perPolicy     perPolicyCollector
	expiry        *prometheus.Desc
	duration      *prometheus.HistogramVec
	previousUses  *prometheus.CounterVec
	generation    prometheus.Gauge
	policies      prometheus.Gauge
	bruteRefusals *prometheus.CounterVec
	delegated     *prometheus.CounterVec

	allowObs prometheus.Observer
	denyObs  prometheus.Observer

	mu    sync.Mutex
	known map[string]*policy.Policy // policy key -> policy in the last snapshot
	// observed is the generation of the last snapshot observed.
	observed uint64
}

// policyCounts are one policy's decisions by reason (indexed like
// check.NumReasons) and when it was last loaded, in Unix nanoseconds (0: never;
// the block for decisions without a policy).
type policyCounts struct {
	decisions [check.NumReasons]atomic.Uint64
	loadedAt  atomic.Int64
	// lastUsed maps a static credential's label ("static" or an API key's
	// name) to when it last allowed a request, in Unix seconds
	// (*atomic.Int64).
	lastUsed sync.Map
}

// touch records that credential allowed a request at now (Unix seconds). A
// credential used many times a second writes once a second: the cache line
// is not bounced between cores by every request.
func (pc *policyCounts) touch(credential string, now int64) {
	v, ok := pc.lastUsed.Load(credential)
	if !ok {
		v, _ = pc.lastUsed.LoadOrStore(credential, new(atomic.Int64))
	}
	if t := v.(*atomic.Int64); t.Load() != now {
		t.Store(now)
	}
}

// prune drops the last-used times of credentials p no longer has.
func (pc *policyCounts) prune(p *policy.Policy) {
	fp := p.Fingerprints()
	pc.lastUsed.Range(func(k, _ any) bool {
		name := k.(string)
		if _, ok := fp.APIKeys[name]; !ok && (name != staticLabel || fp.StaticToken == "") {
			pc.lastUsed.Delete(name)
		}
		return true
	})
}

// staticLabel is the credential label of the static token (as in
// registry_auth_previous_token_uses_total and registry_auth_rotations_total).
const staticLabel = "static"

// perPolicyCollector exposes the policyCounts blocks, keyed by policy key
// ("" for decisions made before a policy was chosen).
type perPolicyCollector struct {
	counts   sync.Map // string -> *policyCounts
	decided  *prometheus.Desc
	lastLoad *prometheus.Desc
	lastUsed *prometheus.Desc

	// added are the keys of the blocks made since the last snapshot was
	// observed: a decision made on a policy just removed can make one
	// again, which the next snapshot deletes.
	addedMu sync.Mutex
	added   map[string]struct{}
}

func (c *perPolicyCollector) of(key string) *policyCounts {
	if v, ok := c.counts.Load(key); ok {
		return v.(*policyCounts)
	}
	v, loaded := c.counts.LoadOrStore(key, &policyCounts{})
	if !loaded {
		c.addedMu.Lock()
		if c.added == nil {
			c.added = map[string]struct{}{}
		}
		c.added[key] = struct{}{}
		c.addedMu.Unlock()
	}
	return v.(*policyCounts)
}

// takeAdded returns the keys of the blocks made since it was last called.
func (c *perPolicyCollector) takeAdded() map[string]struct{} {
	c.addedMu.Lock()
	defer c.addedMu.Unlock()
	a := c.added
	c.added = nil
	return a
}

// Describe implements prometheus.Collector.
func (c *perPolicyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.decided
	ch <- c.lastLoad
	ch <- c.lastUsed
}

// Collect implements prometheus.Collector: a series for each policy and
// reason counted at least once, and the load time of each loaded policy.
func (c *perPolicyCollector) Collect(ch chan<- prometheus.Metric) {
	c.counts.Range(func(k, v any) bool {
		key, pc := k.(string), v.(*policyCounts)
		for i := range pc.decisions {
			n := pc.decisions[i].Load()
			if n == 0 {
				continue
			}
			r := check.ReasonAt(i)
			method, allowed := r.Method()
			result := "deny"
			if allowed {
				result = "allow"
			}
			ch <- prometheus.MustNewConstMetric(c.decided, prometheus.CounterValue, float64(n), key, string(method), result, string(r))
		}
		if t := pc.loadedAt.Load(); t != 0 {
			ch <- prometheus.MustNewConstMetric(c.lastLoad, prometheus.GaugeValue, float64(t)/1e9, key)
		}
		pc.lastUsed.Range(func(k, v any) bool {
			ch <- prometheus.MustNewConstMetric(c.lastUsed, prometheus.GaugeValue, float64(v.(*atomic.Int64).Load()), key, k.(string))
			return true
		})
		return true
	})
}

// NewMetrics creates the metrics; call Register to expose them.
func NewMetrics() *Metrics {
	m := &Metrics{
		perPolicy: perPolicyCollector{
			decided: prometheus.NewDesc("registry_auth_decisions_total",
				"Auth decisions by policy, authentication method (network-trusted, federation-static, session_cookie, oidc for every JWT, delegated; empty when denied), result (allow, deny) and reason.",
				[]string{"policy", "method", "result", "reason"}, nil),
			lastLoad: prometheus.NewDesc("registry_auth_policy_last_load_timestamp_seconds",
				"When each policy was last (re)loaded into this process, as a Unix time.",
				[]string{"policy"}, nil),
			lastUsed: prometheus.NewDesc("registry_auth_credential_last_used_timestamp_seconds",
				"When each static token (credential \"static\") or API key last allowed a request in this process, as a Unix time (one-second resolution). Absent for one not used since this process started.",
				[]string{"policy", "credential"}, nil),
		},
		expiry: prometheus.NewDesc("registry_auth_credential_expiry_seconds",
			"Seconds until each static token (credential \"static\") or API key with an expiresAt expires, negative once expired (then refused: credential_expired).",
			[]string{"policy", "credential"}, nil),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "registry_auth_decision_duration_seconds",
			Help:    "Time to decide and answer one /validate request.",
			Buckets: []float64{0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1},
		}, []string{"result"}),
		previousUses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_auth_previous_token_uses_total",
			Help: "Requests allowed by a previous static token, API key, federation token or session signing key inside its rotation grace window. When it stops growing, old clients are gone.",
		}, []string{"policy", "credential"}),
		generation: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "registry_auth_config_generation",
			Help: "Generation of the configuration snapshot in force in this process; grows on every change.",
		}),
		policies: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "registry_auth_policies",
			Help: "Number of policies in force in this process.",
		}),
		bruteRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_auth_bruteforce_refusals_total",
			Help: "Requests refused without comparing credentials because their client failed too often.",
		}, []string{"policy"}),
		delegated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_auth_delegated_checks_total",
			Help: "Checks sent to a policy's delegate (the upstream auth server), by outcome: allowed, denied (its 401 or 403), and the refusals for error, timeout, overloaded (too many in flight) and bad_response.",
		}, []string{"policy", "outcome"}),
		known: map[string]*policy.Policy{},
	}
	m.allowObs = m.duration.WithLabelValues("allow")
	m.denyObs = m.duration.WithLabelValues("deny")
	return m
}

// Register registers the metrics with reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{&m.perPolicy, expiryCollector{m}, m.duration, m.previousUses, m.generation, m.policies, m.bruteRefusals, m.delegated} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// ObserveDelegated counts one delegated check (hook it to NewDelegator).
func (m *Metrics) ObserveDelegated(policyKey, outcome string) {
	m.delegated.WithLabelValues(policyKey, outcome).Inc()
}

// ObserveDecision implements Observer.
func (m *Metrics) ObserveDecision(d policy.Decision, elapsed time.Duration) {
	key := ""
	if d.Policy != nil {
		key = d.Policy.Key()
	}
	if d.Allowed() {
		m.allowObs.Observe(elapsed.Seconds())
	} else {
		m.denyObs.Observe(elapsed.Seconds())
	}
	// The rare series first, the policy's counts block last: a decision
	// for a policy just removed then always leaves a block behind, and
	// the next snapshot, finding it, deletes the rare series with it.
	switch d.Reason {
	case check.ReasonAllowedStaticTokenPrevious:
		m.previousUses.WithLabelValues(key, "static").Inc()
	case check.ReasonAllowedAPIKeyPrevious:
		m.previousUses.WithLabelValues(key, d.CredentialName).Inc()
	case check.ReasonAllowedFederationPrevious:
		m.previousUses.WithLabelValues(key, "federation").Inc()
	case check.ReasonAllowedSessionPrevious:
		m.previousUses.WithLabelValues(key, "session").Inc()
	case check.ReasonTooManyFailures:
		m.bruteRefusals.WithLabelValues(key).Inc()
	}
	i, ok := d.Reason.Index()
	if !ok {
		i, _ = check.ReasonUnlisted.Index()
	}
	pc := m.perPolicy.of(key)
	pc.decisions[i].Add(1)
	switch d.Reason {
	case check.ReasonAllowedStaticToken, check.ReasonAllowedStaticTokenPrevious:
		pc.touch(staticLabel, time.Now().Unix())
	case check.ReasonAllowedAPIKey, check.ReasonAllowedAPIKeyPrevious:
		pc.touch(d.CredentialName, time.Now().Unix())
	}
}

// expiryCollector exposes registry_auth_credential_expiry_seconds, computed
// when scraped from the policies in force: nothing per request, and the
// value is right at every scrape without a reload.
type expiryCollector struct{ m *Metrics }

// Describe implements prometheus.Collector.
func (c expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.m.expiry }

// Collect implements prometheus.Collector.
func (c expiryCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	for key, p := range c.m.known {
		e := p.Expiries()
		if !e.StaticToken.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.m.expiry, prometheus.GaugeValue, e.StaticToken.Sub(now).Seconds(), key, staticLabel)
		}
		for name, at := range e.APIKeys {
			ch <- prometheus.MustNewConstMetric(c.m.expiry, prometheus.GaugeValue, at.Sub(now).Seconds(), key, name)
		}
	}
}

// ObserveSnapshot records a newly published snapshot: the generation, the
// load time of each policy that changed, and it deletes the series of
// policies that are gone. Hook it to Store.OnPublish.
//
// When the snapshot says which policies changed since the one observed
// before, only those are looked at: loading n policies one by one costs
// O(n), not O(n²). Otherwise every policy is.
//
// A request that chose a policy from the snapshot before can still count a
// decision for it after it is gone; the next snapshot deletes that again.
func (m *Metrics) ObserveSnapshot(s *policy.Snapshot) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.generation.Set(float64(s.Generation()))
	m.policies.Set(float64(s.Len()))
	now := time.Now().UnixNano()
	changed, ok := s.Changed()
	if !ok || m.observed == 0 || s.Generation() != m.observed+1 {
		m.observeAll(s, now)
	} else {
		for _, key := range changed {
			p := s.Policy(key)
			if p == nil {
				delete(m.known, key)
				m.forget(key)
				continue
			}
			if m.known[key] != p {
				pc := m.perPolicy.of(key)
				pc.loadedAt.Store(now)
				pc.prune(p)
				m.known[key] = p
			}
		}
	}
	// Blocks made since the last snapshot for a policy that is not in
	// this one: decisions made on a policy just removed.
	for key := range m.perPolicy.takeAdded() {
		if key != "" && s.Policy(key) == nil {
			m.forget(key)
		}
	}
	m.observed = s.Generation()
}

// observeAll looks at every policy of the snapshot.
func (m *Metrics) observeAll(s *policy.Snapshot, now int64) {
	for key, p := range s.All() {
		if m.known[key] != p {
			pc := m.perPolicy.of(key)
			pc.loadedAt.Store(now)
			pc.prune(p)
		}
	}
	// Every policy of the last snapshot has a block, and so does any
	// policy a late decision counted for.
	m.perPolicy.counts.Range(func(k, _ any) bool {
		if key := k.(string); key != "" && s.Policy(key) == nil {
			m.forget(key)
		}
		return true
	})
	m.known = make(map[string]*policy.Policy, s.Len())
	for key, p := range s.All() {
		m.known[key] = p
	}
}

func (m *Metrics) forget(key string) {
	labels := prometheus.Labels{"policy": key}
	m.previousUses.DeletePartialMatch(labels)
	m.bruteRefusals.DeletePartialMatch(labels)
	m.delegated.DeletePartialMatch(labels)
	m.perPolicy.counts.Delete(key)
}
