package monitor

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"time"

	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/store"
)

// EventSessionStart is the audit event LearnBaseline learns from.
const EventSessionStart = "session.start"

// hoursPerWeek is the number of hour-of-week buckets.
const hoursPerWeek = 7 * 24

// userHours is one user's activity: the number of distinct clock hours
// they were active in, per hour of the week in their time zone.
type userHours struct {
	counts [hoursPerWeek]uint16
	total  uint32
	// first and last are the first and latest hours counted, in hours
	// since the Unix epoch.
	first, last int32
}

// baseline learns each user's usual hours. Safe for concurrent use.
type baseline struct {
	cfg  UnusualHoursConfig
	seed maphash.Seed
	zone *time.Location
	// zones are the per-user time zones.
	zones map[string]*time.Location

	// mu guards users: LearnBaseline may run while Run observes.
	mu    sync.Mutex
	users *table[uint64, userHours]
}

func newBaseline(cfg UnusualHoursConfig) (*baseline, error) {
	b := &baseline{cfg: cfg, seed: maphash.MakeSeed(), zones: make(map[string]*time.Location),
		users: newTable[uint64, userHours](cfg.MaxUsers)}
	var err error
	if b.zone, err = loadZone(cfg.TimeZone); err != nil {
		return nil, fmt.Errorf("monitor: unusual_hours.time_zone: %w", err)
	}
	for user, name := range cfg.TimeZones {
		if b.zones[user], err = loadZone(name); err != nil {
			return nil, fmt.Errorf("monitor: unusual_hours.time_zones[%s]: %w", user, err)
		}
	}
	return b, nil
}

// judgement is how usual one moment is for a user.
type judgement struct {
	// judged reports enough history (min_events over min_days).
	judged bool
	// share is the share of the user's active hours within Spread hours
	// of this hour of the week.
	share       float64
	total, days int
	local       time.Time
	zone        string
}

// observe judges user's activity at t against what was learned before,
// then learns it.
func (b *baseline) observe(user string, t time.Time) judgement {
	local := t.In(b.location(user))
	b.mu.Lock()
	defer b.mu.Unlock()
	u, seen := b.users.put(maphash.String(b.seed, user))
	j := judgement{local: local, zone: local.Location().String()}
	if seen {
		j.total, j.days = int(u.total), int(u.last-u.first)/24
		j.judged = j.total >= b.cfg.MinEvents && j.days >= b.cfg.MinDays
		if j.judged {
			how := hourOfWeek(local)
			var near int
			for d := -b.cfg.Spread; d <= b.cfg.Spread; d++ {
				near += int(u.counts[(how+d+hoursPerWeek)%hoursPerWeek])
			}
			j.share = float64(near) / float64(u.total)
		}
	}
	u.learn(local, seen)
	return j
}

// learn counts user active at t.
func (b *baseline) learn(user string, t time.Time) {
	local := t.In(b.location(user))
	b.mu.Lock()
	defer b.mu.Unlock()
	u, seen := b.users.put(maphash.String(b.seed, user))
	u.learn(local, seen)
}

// learn counts the hour of local, once per clock hour (activity within
// the hour last counted adds nothing).
func (u *userHours) learn(local time.Time, seen bool) {
	h := int32(local.Unix() / 3600)
	if seen && h == u.last {
		return
	}
	how := hourOfWeek(local)
	if u.counts[how] < math.MaxUint16 {
		u.counts[how]++
	}
	u.total++
	switch {
	case !seen:
		u.first, u.last = h, h
	case h > u.last:
		u.last = h
	case h < u.first:
		u.first = h
	}
}

func (b *baseline) location(user string) *time.Location {
	if z, ok := b.zones[user]; ok {
		return z
	}
	return b.zone
}

// hourOfWeek is 0 for Sunday 00:00-00:59 up to 167 for Saturday 23:00.
func hourOfWeek(t time.Time) int { return int(t.Weekday())*24 + t.Hour() }

// LearnBaseline reads the session starts of the last unusual_hours.learn_for
// from the audit log in db into the users' baselines and returns how many
// it read. Call it once at start-up, before or while Run runs; after it,
// accepted verifications keep the baselines learning.
func (m *Monitor) LearnBaseline(ctx context.Context, db *store.DB) (int, error) {
	c := m.cfg.UnusualHours
	if !m.cfg.Enabled || !c.Enabled {
		return 0, nil
	}
	q := audit.Query{Type: EventSessionStart, Since: m.now().Add(-c.LearnFor), Limit: audit.MaxLimit}
	n := 0
	for {
		evs, err := audit.Search(ctx, db, q)
		if err != nil {
			return n, fmt.Errorf("monitor: learn usual hours: %w", err)
		}
		for _, ev := range evs {
			if ev.Actor != "" && !m.det.ignoreUsers[ev.Actor] {
				m.det.hours.learn(ev.Actor, ev.Time)
				n++
			}
		}
		if len(evs) < q.Limit {
			return n, nil
		}
		q.After = evs[len(evs)-1].Seq
	}
}
