package monitor

import (
	"fmt"
	"hash/maphash"
	"maps"
	"strconv"
	"time"

	"github.com/vigil-pam/vigil/internal/alert"
)

// AlertKind is the Kind of every alert the monitor raises; the Rule is
// the detector's name.
const AlertKind = "monitor"

// maxIncidentKey is the longest finding key kept as is; longer ones are
// hashed so that attacker-chosen strings cannot grow the incident table.
const maxIncidentKey = 200

// finding is one detector match: what an alert would say.
type finding struct {
	detector string
	// key identifies the incident within the detector: findings with the
	// same key are one incident (deduplicated).
	key      string
	severity alert.Severity
	time     time.Time
	summary  string
	actor    string
	source   string
	// data is the evidence, already clipped (never the token).
	data map[string]any
}

// incident is a run of findings with one detector and key, each within
// the dedup window of the one before.
type incident struct {
	// latest is the most recent finding (its evidence goes in summaries),
	// with the incident's severity.
	latest finding
	// dedupKey is the alert store's DedupKey of its first alert: a
	// repeat from another node or after a restart merges into it.
	dedupKey string
	// first and last are the times of its first and latest findings.
	first, last time.Time
	// count is the occurrences so far; reported those covered by alerts
	// raised (or being raised).
	count, reported int64
	// raisedAt is when the last alert for it was raised; zero if none.
	raisedAt time.Time
}

// pending is an alert decided on, to be raised outside the lock.
type pending struct {
	alert    alert.Alert
	detector string
	// incident is the table key of its incident, empty for alerts of no
	// incident; prevReported and reportedTo the incident's reported count
	// before and after this alert, to roll back if the raise fails (so
	// the next flush retries).
	incident                 string
	prevReported, reportedTo int64
}

// capWindow counts alerts of one detector and severity in one minute.
type capWindow struct {
	minute int64
	n      int
}

// incidents deduplicates findings into incidents and rate-limits the
// alerts they raise. Not safe for concurrent use: Monitor.mu guards it.
type incidents struct {
	dedup, summaryEvery time.Duration
	perMinute           int
	open                *table[string, incident]
	caps                map[string]*capWindow
	seed                maphash.Seed
	// onSuppress is told of each finding not raised as its own alert.
	onSuppress func(detector string)
}

func newIncidents(cfg Config) *incidents {
	return &incidents{dedup: cfg.DedupWindow, summaryEvery: cfg.SummaryEvery, perMinute: cfg.MaxAlertsPerMinute,
		open: newTable[string, incident](cfg.MaxIncidents), caps: make(map[string]*capWindow),
		seed: maphash.MakeSeed(), onSuppress: func(string) {}}
}

// keys returns a finding's incident table key and the alert store's
// DedupKey for its first alert.
func (in *incidents) keys(f *finding) (k, dedup string) {
	key := f.key
	if len(key) > maxIncidentKey {
		key = "#" + strconv.FormatUint(maphash.String(in.seed, key), 16)
	}
	return f.detector + "\x00" + key, "monitor/" + f.detector + "/" + key
}

// allow reports whether one more alert of detector at sev fits the cap
// of the minute of t, and counts it if so.
func (in *incidents) allow(detector string, sev alert.Severity, t time.Time) bool {
	k := detector + "/" + string(sev)
	w := in.caps[k]
	if w == nil {
		w = &capWindow{}
		in.caps[k] = w
	}
	if m := t.Unix() / 60; m != w.minute {
		w.minute, w.n = m, 0
	}
	if w.n >= in.perMinute {
		return false
	}
	w.n++
	return true
}

// offer takes a finding and returns the alerts to raise now: none when it
// joins an open incident (it is counted), the first alert of a new
// incident when the cap allows, and before that the summary of an
// incident it closes or escalates.
func (in *incidents) offer(f *finding, now time.Time) []pending {
	k, dedup := in.keys(f)
	var out []pending
	if inc := in.open.get(k); inc != nil {
		if f.time.Sub(inc.last) < in.dedup && f.severity.Rank() <= inc.latest.severity.Rank() {
			inc.count++
			if f.time.After(inc.last) {
				inc.last = f.time
			}
			sev := inc.latest.severity
			inc.latest = *f
			inc.latest.severity = sev
			in.onSuppress(f.detector)
			return nil
		}
		// Ended (quiet for the dedup window) or escalated: its count so
		// far is reported before a new incident starts.
		if p, ok := in.summarize(k, inc, now); ok {
			out = append(out, p)
		}
	}
	inc, _ := in.open.put(k)
	*inc = incident{latest: *f, dedupKey: dedup, first: f.time, last: f.time, count: 1}
	if !in.allow(f.detector, f.severity, f.time) {
		in.onSuppress(f.detector)
		return out
	}
	inc.reported, inc.raisedAt = 1, now
	a := in.newAlert(f, inc)
	a.DedupKey = dedup
	return append(out, pending{alert: a, detector: f.detector, incident: k, prevReported: 0, reportedTo: 1})
}

// flush raises what the open incidents have not reported: the first alert
// of an incident held back by the cap, the summary of an incident that
// has ended, and a periodic summary of one that goes on; with final, the
// summary of every incident with anything unreported. Ended incidents
// with nothing to report are dropped.
func (in *incidents) flush(now time.Time, final bool) []pending {
	var out []pending
	var ended []string
	in.open.each(func(k string, inc *incident) {
		closed := now.Sub(inc.last) >= in.dedup
		if inc.count > inc.reported && (final || closed || inc.reported == 0 || now.Sub(inc.raisedAt) >= in.summaryEvery) {
			if p, ok := in.summarize(k, inc, now); ok {
				out = append(out, p)
			}
		}
		if closed && inc.count == inc.reported {
			ended = append(ended, k)
		}
	})
	for _, k := range ended {
		in.open.remove(k)
	}
	return out
}

// summarize returns the alert reporting inc's unreported occurrences, if
// the cap allows, and marks them reported.
func (in *incidents) summarize(k string, inc *incident, now time.Time) (pending, bool) {
	unreported := inc.count - inc.reported
	if unreported <= 0 || !in.allow(inc.latest.detector, inc.latest.severity, now) {
		return pending{}, false
	}
	f := &inc.latest
	a := in.newAlert(f, inc)
	a.Time = now
	a.Data["suppressed"] = unreported
	if inc.reported == 0 {
		// The first alert of the incident, held back by the cap.
		a.DedupKey = inc.dedupKey
		a.Summary = fmt.Sprintf("%s (%d occurrences since %s)", f.summary, inc.count, inc.first.UTC().Format(time.RFC3339))
	} else {
		// A summary is never merged into the first alert: its counts
		// are the news.
		a.Summary = fmt.Sprintf("%s (%d more occurrences, %d since %s)", f.summary, unreported, inc.count, inc.first.UTC().Format(time.RFC3339))
	}
	p := pending{alert: a, detector: f.detector, incident: k, prevReported: inc.reported, reportedTo: inc.count}
	inc.reported, inc.raisedAt = inc.count, now
	return p, true
}

// newAlert builds the alert for inc's latest finding f.
func (in *incidents) newAlert(f *finding, inc *incident) alert.Alert {
	data := make(map[string]any, len(f.data)+5)
	maps.Copy(data, f.data)
	data["detector"] = f.detector
	data["occurrences"] = inc.count
	data["first_seen"] = inc.first.UTC().Format(time.RFC3339Nano)
	data["last_seen"] = inc.last.UTC().Format(time.RFC3339Nano)
	return alert.Alert{Time: f.time, Severity: f.severity, Kind: AlertKind, Rule: f.detector,
		Actor: f.actor, Source: f.source, Summary: f.summary, Data: data}
}

// failed rolls back the reported count of p's incident after its alert
// could not be raised, so the next flush tries again.
func (in *incidents) failed(p *pending) {
	if inc := in.open.get(p.incident); inc != nil && inc.reported == p.reportedTo {
		inc.reported = p.prevReported
	}
}
