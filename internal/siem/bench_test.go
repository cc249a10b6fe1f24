package siem

import (
	"testing"
	"time"
)

// BenchmarkForwardSyslogTCP measures events forwarded per second to the
// in-process collector over loopback TCP, acknowledgement check included:
// b.N events (about 250 bytes of data each) are in the log before the
// forwarder starts, and the clock stops when its cursor reaches the last.
// The collector parses every frame on the same machine, so this is a
// floor. Run it with a fixed count, e.g. -benchtime 50000x.
func BenchmarkForwardSyslogTCP(b *testing.B) {
	for _, format := range []string{FormatJSONL, FormatCEF} {
		b.Run(format, func(b *testing.B) {
			db := openDB(b)
			l := openLog(b, db)
			col := startCollector(b, nil)
			appendN(b, l, b.N, 200)
			b.ResetTimer()
			start := time.Now()
			startForwarder(b, db, l, nil, &Syslog{SinkName: "bench", Addr: col.addr, Format: format})
			waitFor(b, "the forwarder to catch up", func() bool { return cursorOf(b, db, "bench") == int64(b.N) })
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			waitFor(b, "the collector", func() bool { return col.count() == b.N })
		})
	}
}
