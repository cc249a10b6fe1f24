package audit

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/vigil-pam/vigil/internal/store"
)

func openDB(t testing.TB) (*store.DB, string) {
	t.Helper()
	url := "sqlite://" + filepath.Join(t.TempDir(), "a.db")
	db, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, url
}

// checkChain recomputes every hash and link.
func checkChain(t *testing.T, evs []Event) {
	t.Helper()
	prev := ""
	for i, ev := range evs {
		if ev.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d", i, ev.Seq)
		}
		if ev.PrevHash != prev {
			t.Fatalf("event %d: prev_hash %s, want %s", ev.Seq, ev.PrevHash, prev)
		}
		if got := Hash(prev, &ev); got != ev.Hash {
			t.Fatalf("event %d: stored hash %s, recomputed %s", ev.Seq, ev.Hash, got)
		}
		prev = ev.Hash
	}
}

func TestAppendConcurrentChain(t *testing.T) {
	db, url := openDB(t)
	ctx := context.Background()
	l, err := Open(ctx, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 250
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := l.Append(ctx, Event{Type: "test", Actor: fmt.Sprint("w", w), Data: map[string]any{"i": i}}); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	l.Close()
	if err := l.Append(ctx, Event{Type: "late"}); err != ErrClosed {
		t.Fatalf("append after close: got %v, want ErrClosed", err)
	}

	// A new log on the same store continues the chain.
	db2, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	l2, err := Open(ctx, db2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l2.Append(ctx, Event{Type: "after-restart"}); err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	evs, err := l2.Search(ctx, Query{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != writers*each+1 {
		t.Fatalf("got %d events, want %d", len(evs), writers*each+1)
	}
	checkChain(t, evs)
	if got, _ := l2.Search(ctx, Query{Type: "test", Actor: "w3", Limit: 10000}); len(got) != each {
		t.Fatalf("search by actor: got %d, want %d", len(got), each)
	}
}

// TestAppendStoreDown: when the store is gone, Append reports an error
// (the caller then refuses the action) instead of hanging or dropping the
// event, and the chain head does not advance past what was written.
func TestAppendStoreDown(t *testing.T) {
	db, _ := openDB(t)
	ctx := context.Background()
	l, err := Open(ctx, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Append(ctx, Event{Type: "ok"}); err != nil {
		t.Fatal(err)
	}
	head := l.last
	db.Close()
	if err := l.Append(ctx, Event{Type: "lost"}); err == nil {
		t.Fatal("append to a closed store succeeded")
	}
	if l.last != head || l.seq != 1 {
		t.Fatalf("chain head moved on a failed write: seq %d", l.seq)
	}
	if err := l.Append(ctx, Event{}); err == nil {
		t.Fatal("event without a type accepted")
	}
}

func TestHashCoversEveryField(t *testing.T) {
	base := Event{Seq: 7, Type: "t", Actor: "a", Target: "x", Session: "s", Source: "1.2.3.4", Data: map[string]any{"k": "v"}}
	h := Hash("prev", &base)
	mutations := map[string]func(*Event){
		"seq":     func(e *Event) { e.Seq++ },
		"type":    func(e *Event) { e.Type = "u" },
		"actor":   func(e *Event) { e.Actor = "b" },
		"target":  func(e *Event) { e.Target = "y" },
		"session": func(e *Event) { e.Session = "z" },
		"source":  func(e *Event) { e.Source = "5.6.7.8" },
		"data":    func(e *Event) { e.Data = map[string]any{"k": "w"} },
		"time":    func(e *Event) { e.Time = e.Time.Add(1) },
	}
	for name, mutate := range mutations {
		e := base
		mutate(&e)
		if Hash("prev", &e) == h {
			t.Errorf("changing %s does not change the hash", name)
		}
	}
	if Hash("other", &base) == h {
		t.Error("prev_hash is not covered")
	}
}

// BenchmarkAppend measures durable appends per second with concurrent
// writers (group commit).
func BenchmarkAppend(b *testing.B) {
	db, _ := openDB(b)
	l, err := Open(context.Background(), db, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.SetParallelism(64)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Append(context.Background(), Event{Type: "bench", Actor: "u", Data: map[string]any{"n": 1}}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
