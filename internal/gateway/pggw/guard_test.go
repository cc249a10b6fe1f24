package pggw

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/rules"
	"github.com/vigil-pam/vigil/internal/session"
)

// failingSink fails the appends of the event types in fail.
type failingSink struct {
	fail map[string]bool
	got  []string
}

func (s *failingSink) Append(_ context.Context, e audit.Event) error {
	s.got = append(s.got, e.Type)
	if s.fail[e.Type] {
		return errors.New("disk full")
	}
	return nil
}

// TestGuardAuditFailure: a rule hit that cannot be audited ends the
// session, whatever the rule's action; one that can goes as the rule
// says.
func TestGuardAuditFailure(t *testing.T) {
	eng, err := rules.New("")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		pack      string
		fail      bool
		wantBlock bool
		wantEnd   bool
	}{
		{"block, audited", "database", false, true, false},
		{"block, audit fails", "database", true, false, true},
		{"alert, audited", "database=alert", false, false, false},
		{"alert, audit fails", "database=alert", true, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set, err := eng.Set([]string{tc.pack})
			if err != nil {
				t.Fatal(err)
			}
			sink := &failingSink{fail: map[string]bool{"rule.hit": tc.fail}}
			c := &conn{
				s:     &Server{cfg: Config{Audit: sink, Now: time.Now, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}},
				ctx:   context.Background(),
				sess:  &session.Session{ID: "s_test", User: "alice", Target: "db1"},
				info:  &authInfo{},
				rules: set,
			}
			c.recState.Store(recFailedOpen) // no recording to mark
			v := c.guard("DROP TABLE accounts")
			if v.block != tc.wantBlock || (v.end != nil) != tc.wantEnd {
				t.Errorf("block %v, end %v; want block %v, end %v", v.block, v.end, tc.wantBlock, tc.wantEnd)
			}
			if len(sink.got) == 0 || sink.got[0] != "rule.hit" {
				t.Errorf("audit events %v, want a rule.hit first", sink.got)
			}
		})
	}
}
