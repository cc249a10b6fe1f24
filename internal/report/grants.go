package report

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-pam/vigil/internal/policy"
	"github.com/vigil-pam/vigil/internal/store"
)

// Grant states in UnusedGrantRow.Status, in the order the report lists
// them.
const (
	// GrantUnused: the grant is older than the window and nothing used it
	// in the window.
	GrantUnused = "unused"
	// GrantUnknown: a role grant with no known use in the window, but
	// sessions on its target and login whose token's roles were not
	// recorded: any of them may have used it.
	GrantUnknown = "unknown"
	// GrantNew: the grant was created inside the window, so it has not
	// yet had the whole window to be used; listed for completeness.
	GrantNew = "new"
)

// UnusedGrantRow is a stored grant nobody used in the window (or one too
// new to tell).
type UnusedGrantRow struct {
	Grant string `json:"grant"`
	// User or Role: whom the grant is for (exactly one is set).
	User      string    `json:"user"`
	Role      string    `json:"role"`
	Target    string    `json:"target"`
	Login     string    `json:"login"`
	Actions   []string  `json:"actions"`
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
	// LastUsed is when a session last used the grant, since its
	// creation; zero for never. LastSession is that session.
	LastUsed    time.Time `json:"last_used,omitzero"`
	LastSession string    `json:"last_session"`
	// DaysUnused counts whole days since LastUsed, or since Created when
	// never used.
	DaysUnused int `json:"days_unused"`
	// Status is GrantUnused, GrantUnknown or GrantNew; Note explains.
	Status string `json:"status"`
	Note   string `json:"note"`
}

var unusedGrantColumns = []string{"GRANT", "WHO", "TARGET", "LOGIN", "ACTIONS", "CREATED", "CREATED BY", "LAST USED",
	"LAST SESSION", "DAYS UNUSED", "STATUS", "NOTE"}

func (g UnusedGrantRow) cells() []string {
	who := "user:" + g.User
	if g.Role != "" {
		who = "role:" + g.Role
	}
	last := "never"
	if !g.LastUsed.IsZero() {
		last = cellTime(g.LastUsed)
	}
	return []string{g.Grant, who, g.Target, g.Login, strings.Join(g.Actions, ","), cellTime(g.Created), g.CreatedBy, last,
		g.LastSession, strconv.Itoa(g.DaysUnused), g.Status, g.Note}
}

// use is the latest session that used some access.
type use struct {
	at      time.Time
	session string
}

func (u *use) add(at time.Time, session string) {
	if at.After(u.at) || (at.Equal(u.at) && session > u.session) {
		u.at, u.session = at, session
	}
}

// access is what a grant gives: a user or role, a target and a login.
type access struct{ who, target, login string }

// usage is what the sessions on record say about which access was used.
type usage struct {
	// byUser and byRole hold the latest session per user (or role the
	// token carried), target and login.
	byUser, byRole map[access]*use
	// unknownRoles counts sessions in the window, per target and login,
	// whose token's roles are not on record.
	unknownRoles map[access]int
}

func latest(m map[access]*use, k access, at time.Time, session string) {
	u := m[k]
	if u == nil {
		u = &use{}
		m[k] = u
	}
	u.add(at, session)
}

// usage reads every session with the roles its session.start event
// recorded (see startRoles).
func (r *Reporter) usage(ctx context.Context, since time.Time) (*usage, error) {
	u := &usage{byUser: map[access]*use{}, byRole: map[access]*use{}, unknownRoles: map[access]int{}}
	rows, err := r.db.QueryContext(ctx, `SELECT s.id, s.subject, s.target, s.login, s.started_at, COALESCE(e.data, '')
		FROM sessions s LEFT JOIN audit_events e ON e.session = s.id AND e.type = $1`, typeSessionStart)
	if err != nil {
		return nil, fmt.Errorf("report: read sessions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, subject, target, login, data string
		var started int64
		if err := rows.Scan(&id, &subject, &target, &login, &started, &data); err != nil {
			return nil, fmt.Errorf("report: read sessions: %w", err)
		}
		at := store.Time(started)
		latest(u.byUser, access{subject, target, login}, at, id)
		roles, known := startRoles(data)
		if !known {
			if !at.Before(since) {
				u.unknownRoles[access{"", target, login}]++
			}
			continue
		}
		for _, role := range roles {
			latest(u.byRole, access{role, target, login}, at, id)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("report: read sessions: %w", err)
	}
	return u, nil
}

// startRoles reads the token's roles from a session.start event's data,
// and whether they were recorded: a "roles" key, even null (no roles),
// means they were; no event, no key or data that does not decode means
// they are unknown.
func startRoles(data string) ([]string, bool) {
	var start map[string]json.RawMessage
	if data == "" || json.Unmarshal([]byte(data), &start) != nil {
		return nil, false
	}
	raw, ok := start["roles"]
	if !ok {
		return nil, false
	}
	var roles []string
	if err := json.Unmarshal(raw, &roles); err != nil {
		return nil, false
	}
	return roles, true
}

// UnusedGrants returns the grants not used since since: a user's grant is
// used by a session of that user on its target as its login; a role's
// grant by such a session whose token carried the role (as its
// session.start event records). Only sessions at or after a grant's
// creation count. Grants created after since are listed as GrantNew
// whether used or not. Order: unused, unknown, new; longest unused first.
func (r *Reporter) UnusedGrants(ctx context.Context, since time.Time) ([]UnusedGrantRow, error) {
	grants, err := policy.NewGrants(r.db, nil).List(ctx, "", "")
	if err != nil {
		return nil, fmt.Errorf("report: unused grants: %w", err)
	}
	u, err := r.usage(ctx, since)
	if err != nil {
		return nil, err
	}
	now := r.now()
	out := []UnusedGrantRow{}
	for _, g := range grants {
		row := UnusedGrantRow{Grant: g.ID, User: g.Subject, Role: g.Role, Target: g.Target, Login: g.Login,
			Actions: g.Actions, Created: g.CreatedAt, CreatedBy: g.CreatedBy}
		if row.Actions == nil {
			row.Actions = []string{}
		}
		last := u.byUser[access{g.Subject, g.Target, g.Login}]
		if g.Role != "" {
			last = u.byRole[access{g.Role, g.Target, g.Login}]
		}
		if last != nil && !last.at.Before(g.CreatedAt) {
			row.LastUsed, row.LastSession = last.at, last.session
		}
		isNew := g.CreatedAt.After(since)
		switch {
		case isNew:
			row.Status, row.Note = GrantNew, "created inside the window"
		case !row.LastUsed.IsZero() && !row.LastUsed.Before(since):
			continue // used in the window
		case g.Role != "" && u.unknownRoles[access{"", g.Target, g.Login}] > 0:
			n := u.unknownRoles[access{"", g.Target, g.Login}]
			row.Status = GrantUnknown
			row.Note = fmt.Sprintf("%d session(s) as %s on %s in the window did not record their token's roles", n, g.Login, g.Target)
		default:
			row.Status = GrantUnused
		}
		ref := row.LastUsed
		if ref.IsZero() {
			ref = g.CreatedAt
		}
		if d := now.Sub(ref); d > 0 {
			row.DaysUnused = int(d / (24 * time.Hour))
		}
		out = append(out, row)
	}
	order := map[string]int{GrantUnused: 0, GrantUnknown: 1, GrantNew: 2}
	slices.SortStableFunc(out, func(a, b UnusedGrantRow) int {
		return cmp.Or(cmp.Compare(order[a.Status], order[b.Status]), cmp.Compare(b.DaysUnused, a.DaysUnused),
			cmp.Compare(a.Grant, b.Grant))
	})
	return out, nil
}
