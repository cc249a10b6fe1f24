package policy

import (
	"fmt"
	"strings"
	"time"
)

// Window is a recurring weekly time window such as
// "Mon-Fri 08:00-18:00 Europe/Berlin". The zero Window is "always".
type Window struct {
	days     [7]bool // indexed by time.Weekday
	from, to int     // minutes after midnight; to <= from wraps past midnight
	loc      *time.Location
	text     string
}

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// ParseWindow parses "DAYS HH:MM-HH:MM [ZONE]". DAYS is a day ("Mon"), a
// range ("Mon-Fri", "Fri-Mon"), a comma list of those, or "*" for every
// day. ZONE is an IANA name; UTC when omitted. An end at or before the
// start runs past midnight ("Mon-Fri 22:00-06:00": starts on those days).
// The empty string is the zero Window.
func ParseWindow(s string) (Window, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Window{}, nil
	}
	fields := strings.Fields(s)
	if len(fields) < 2 || len(fields) > 3 {
		return Window{}, fmt.Errorf("policy: window %q: want 'DAYS HH:MM-HH:MM [ZONE]'", s)
	}
	w := Window{loc: time.UTC, text: strings.Join(fields, " ")}
	if fields[0] == "*" {
		w.days = [7]bool{true, true, true, true, true, true, true}
	} else {
		for _, part := range strings.Split(fields[0], ",") {
			a, b, isRange := strings.Cut(part, "-")
			start, ok1 := weekdays[strings.ToLower(a)]
			end := start
			ok2 := true
			if isRange {
				end, ok2 = weekdays[strings.ToLower(b)]
			}
			if !ok1 || !ok2 {
				return Window{}, fmt.Errorf("policy: window %q: bad days %q (use Mon..Sun)", s, part)
			}
			for d := start; ; d = (d + 1) % 7 {
				w.days[d] = true
				if d == end {
					break
				}
			}
		}
	}
	a, b, ok := strings.Cut(fields[1], "-")
	var err error
	if w.from, err = parseClock(a); ok && err == nil {
		w.to, err = parseClock(b)
	}
	if !ok || err != nil {
		return Window{}, fmt.Errorf("policy: window %q: bad time range %q (want HH:MM-HH:MM)", s, fields[1])
	}
	if len(fields) == 3 {
		if w.loc, err = time.LoadLocation(fields[2]); err != nil {
			return Window{}, fmt.Errorf("policy: window %q: unknown time zone %q", s, fields[2])
		}
	}
	return w, nil
}

func parseClock(s string) (int, error) {
	var h, m int
	if len(s) != 5 || s[2] != ':' {
		return 0, fmt.Errorf("bad clock %q", s)
	}
	if _, err := fmt.Sscanf(s, "%02d:%02d", &h, &m); err != nil || h > 24 || m > 59 || (h == 24 && m != 0) {
		return 0, fmt.Errorf("bad clock %q", s)
	}
	return h*60 + m, nil
}

// IsZero reports whether the window is "always".
func (w Window) IsZero() bool { return w.loc == nil }

// String returns the window as it was written.
func (w Window) String() string { return w.text }

// Open reports whether t is inside the window and, if so, when the current
// opening ends. The zero Window is always open and never ends.
func (w Window) Open(t time.Time) (bool, time.Time) {
	if w.IsZero() {
		return true, time.Time{}
	}
	lt := t.In(w.loc)
	y, m, d := lt.Date()
	// An opening that started yesterday may still run (past midnight).
	for back := 1; back >= 0; back-- {
		day := time.Date(y, m, d-back, 0, 0, 0, 0, w.loc)
		if !w.days[day.Weekday()] {
			continue
		}
		start := time.Date(y, m, d-back, w.from/60, w.from%60, 0, 0, w.loc)
		endDay := d - back
		if w.to <= w.from {
			endDay++
		}
		end := time.Date(y, m, endDay, w.to/60, w.to%60, 0, 0, w.loc)
		if !t.Before(start) && t.Before(end) {
			return true, end
		}
	}
	return false, time.Time{}
}
