package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegisterSharesExisting(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "vigil_test_total", Help: "test"}
	a, err := Register(reg, prometheus.NewCounter(opts))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Register(reg, prometheus.NewCounter(opts))
	if err != nil || b != a {
		t.Fatalf("second registration: got %v (same %v), want the first counter", err, b == a)
	}
	if _, err := Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_test_total", Help: "other"})); err == nil {
		t.Fatal("a different collector under a taken name was accepted")
	}
	if c, err := Register[prometheus.Counter](nil, a); err != nil || c != a {
		t.Fatalf("nil registry: got %v %v", c, err)
	}
}
