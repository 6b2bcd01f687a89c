package standalone

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// loaderMetrics show the loader's health: loads and their problems, and
// checks of the secret files that hang (the Ready check says the same).
type loaderMetrics struct {
	loads    *prometheus.CounterVec
	problems prometheus.Gauge
	lastLoad prometheus.Gauge
	skipped  prometheus.Counter
	running  prometheus.GaugeFunc
}

func newLoaderMetrics(s *Loader) loaderMetrics {
	return loaderMetrics{
		loads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_auth_config_loads_total",
			Help: "Standalone mode: configuration loads (at start, and when a secret file or the OIDC issuer changed), by result: ok, or problems (a credential refused).",
		}, []string{"result"}),
		problems: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "registry_auth_config_problems",
			Help: "Standalone mode: problems of the configuration in force (each refuses a credential; the log names them).",
		}),
		lastLoad: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "registry_auth_config_last_load_timestamp_seconds",
			Help: "Standalone mode: when the configuration in force was loaded.",
		}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "registry_auth_config_file_checks_skipped_total",
			Help: "Standalone mode: checks of the secret files skipped because the previous one had not returned (a file system that hangs).",
		}),
		running: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "registry_auth_config_file_check_running_seconds",
			Help: "Standalone mode: how long the check of the secret files in progress has run (0: none). Above a few seconds, the files' changes are not seen.",
		}, func() float64 {
			started := s.checking.Load()
			if started == 0 {
				return 0
			}
			return time.Since(time.Unix(0, started)).Seconds()
		}),
	}
}

func (m loaderMetrics) loaded(problems, blocking int) {
	result := "ok"
	if problems > 0 {
		result = "problems"
	}
	m.loads.WithLabelValues(result).Inc()
	m.problems.Set(float64(problems))
	m.lastLoad.SetToCurrentTime()
}

// Collectors returns the loader's metrics, for the registry the process
// serves.
func (s *Loader) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.metrics.loads, s.metrics.problems, s.metrics.lastLoad, s.metrics.skipped, s.metrics.running}
}
