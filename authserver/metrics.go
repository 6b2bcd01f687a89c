package authserver

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the auth service's Prometheus metrics. Register them with the
// registry the process serves (controller-runtime's metrics.Registry in both
// modes).
//
// Label values are bounded: policy is a loaded policy's key (series of a
// removed policy are deleted), method and reason come from fixed sets, and
// credential is "static" or an API key name of a loaded policy.
type Metrics struct {
	decisions     *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	previousUses  *prometheus.CounterVec
	generation    prometheus.Gauge
	policies      prometheus.Gauge
	lastLoad      *prometheus.GaugeVec
	bruteRefusals *prometheus.CounterVec

	// counters caches the child counters, so a decision costs one map
	// lookup and no allocation.
	counters sync.Map // decisionKey -> prometheus.Counter
	allowObs prometheus.Observer
	denyObs  prometheus.Observer

	mu    sync.Mutex
	known map[string]*Policy // policy key -> policy in the last snapshot
}

type decisionKey struct {
	policy, method string
	reason         Reason
}

// NewMetrics creates the metrics; call Register to expose them.
func NewMetrics() *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_auth_decisions_total",
			Help: "Auth decisions by policy, authentication method (network-trusted, api-key, session, oidc; empty when denied), result (allow, deny) and reason.",
		}, []string{"policy", "method", "result", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "registry_auth_decision_duration_seconds",
			Help:    "Time to decide and answer one /validate request.",
			Buckets: []float64{0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1},
		}, []string{"result"}),
		previousUses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_auth_previous_token_uses_total",
			Help: "Requests allowed by a previous static token or API key inside its rotation grace window. When it stops growing, old clients are gone.",
		}, []string{"policy", "credential"}),
		generation: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "registry_auth_config_generation",
			Help: "Generation of the configuration snapshot in force in this process; grows on every change.",
		}),
		policies: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "registry_auth_policies",
			Help: "Number of policies in force in this process.",
		}),
		lastLoad: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "registry_auth_policy_last_load_timestamp_seconds",
			Help: "When each policy was last (re)loaded into this process, as a Unix time.",
		}, []string{"policy"}),
		bruteRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_auth_bruteforce_refusals_total",
			Help: "Requests refused without comparing credentials because their client failed too often.",
		}, []string{"policy"}),
		known: map[string]*Policy{},
	}
	m.allowObs = m.duration.WithLabelValues("allow")
	m.denyObs = m.duration.WithLabelValues("deny")
	return m
}

// Register registers the metrics with reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.decisions, m.duration, m.previousUses, m.generation, m.policies, m.lastLoad, m.bruteRefusals} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// ObserveDecision implements Observer.
func (m *Metrics) ObserveDecision(d Decision, elapsed time.Duration) {
	k := decisionKey{reason: d.Reason}
	if d.Policy != nil {
		k.policy = d.Policy.key
	}
	if d.Identity != nil {
		k.method = string(d.Identity.Method)
		m.allowObs.Observe(elapsed.Seconds())
	} else {
		m.denyObs.Observe(elapsed.Seconds())
	}
	c, ok := m.counters.Load(k)
	if !ok {
		result := "deny"
		if d.Identity != nil {
			result = "allow"
		}
		c, _ = m.counters.LoadOrStore(k, m.decisions.WithLabelValues(k.policy, k.method, result, string(k.reason)))
	}
	c.(prometheus.Counter).Inc()
	switch d.Reason {
	case ReasonAllowedStaticTokenPrevious:
		m.previousUses.WithLabelValues(k.policy, "static").Inc()
	case ReasonAllowedAPIKeyPrevious:
		m.previousUses.WithLabelValues(k.policy, d.CredentialName).Inc()
	case ReasonTooManyFailures:
		m.bruteRefusals.WithLabelValues(k.policy).Inc()
	}
}

// ObserveSnapshot records a newly published snapshot: the generation, the
// load time of each policy that changed, and it deletes the series of
// policies that are gone. Hook it to Store.OnPublish.
func (m *Metrics) ObserveSnapshot(s *Snapshot) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.generation.Set(float64(s.generation))
	m.policies.Set(float64(len(s.policies)))
	now := float64(time.Now().UnixNano()) / 1e9
	for key, p := range s.policies {
		if m.known[key] != p {
			m.lastLoad.WithLabelValues(key).Set(now)
		}
	}
	for key := range m.known {
		if _, ok := s.policies[key]; !ok {
			m.forget(key)
		}
	}
	m.known = make(map[string]*Policy, len(s.policies))
	for key, p := range s.policies {
		m.known[key] = p
	}
}

func (m *Metrics) forget(key string) {
	labels := prometheus.Labels{"policy": key}
	m.decisions.DeletePartialMatch(labels)
	m.previousUses.DeletePartialMatch(labels)
	m.lastLoad.DeletePartialMatch(labels)
	m.bruteRefusals.DeletePartialMatch(labels)
	m.counters.Range(func(k, _ any) bool {
		if k.(decisionKey).policy == key {
			m.counters.Delete(k)
		}
		return true
	})
}
