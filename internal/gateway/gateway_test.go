package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/vigil-pam/vigil/internal/rules"
)

// TestHitsReport: every hit is audited, alerts or not, and the first
// audit failure is returned so the gateway can fail closed.
func TestHitsReport(t *testing.T) {
	eng, err := rules.New("")
	if err != nil {
		t.Fatal(err)
	}
	set, err := eng.Set([]string{"database"})
	if err != nil {
		t.Fatal(err)
	}
	hits := set.Match(rules.KindSQL, "DROP TABLE a; TRUNCATE b")
	if len(hits) < 2 {
		t.Fatalf("want two hits, got %d", len(hits))
	}
	tests := []struct {
		name    string
		failAt  int // the audit append that fails, 0 for none
		wantErr bool
	}{
		{"all audited", 0, false},
		{"first fails", 1, true},
		{"second fails", 2, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			h := Hits{
				Audit: func(typ string, data map[string]any) error {
					n++
					if typ != "rule.hit" {
						t.Errorf("audit type %q", typ)
					}
					if n == tc.failAt {
						return errors.New("disk full")
					}
					return nil
				},
				Log: slog.New(slog.NewTextHandler(io.Discard, nil)), User: "alice", Target: "db1", Session: "s_1",
			}
			err := h.Report(context.Background(), rules.KindSQL, "DROP TABLE a; TRUNCATE b", hits, rules.ActionBlock)
			if (err != nil) != tc.wantErr {
				t.Errorf("err %v, want error %v", err, tc.wantErr)
			}
			if n != len(hits) {
				t.Errorf("%d audit appends, want one per hit (%d)", n, len(hits))
			}
		})
	}
}
