package breakglass

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSecretForm(t *testing.T) {
	sec, err := newSecret()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[A-Z2-7]{4}(-[A-Z2-7]{4}){7}$`).MatchString(sec) {
		t.Fatalf("got secret %q, want 8 dash-separated groups of 4 base32 characters", sec)
	}
	raw, err := parseSecret(sec)
	if err != nil || len(raw) != secretBytes {
		t.Fatalf("got %d bytes, %v; want %d bytes", len(raw), err, secretBytes)
	}
	if other, _ := newSecret(); other == sec {
		t.Fatal("two secrets are the same")
	}
	// What a person might type for the same secret.
	squashed := strings.ReplaceAll(sec, "-", "")
	variants := map[string]string{
		"lower case":     strings.ToLower(sec),
		"no dashes":      squashed,
		"spaces":         strings.ReplaceAll(sec, "-", " "),
		"surrounding ws": "  " + sec + "\t",
	}
	for name, typed := range variants {
		t.Run(name, func(t *testing.T) {
			got, err := parseSecret(typed)
			if err != nil || !bytes.Equal(got, raw) {
				t.Fatalf("got %x, %v; want %x", got, err, raw)
			}
		})
	}
	// 0, 1 and 8 are read as O, I and B.
	lookalike := strings.NewReplacer("O", "0", "I", "1", "B", "8").Replace(sec)
	if got, err := parseSecret(lookalike); err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("look-alike digits: got %x, %v; want %x", got, err, raw)
	}

	bad := []struct{ name, typed string }{
		{"empty", ""},
		{"too short", squashed[:31]},
		{"too long", squashed + "AAAA"},
		{"not base32", strings.Repeat("!", 32)},
		{"digit 9", "9" + squashed[1:]},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseSecret(tc.typed); err != errMalformedSecret {
				t.Fatalf("got %v, want errMalformedSecret", err)
			}
		})
	}
}

func TestHash(t *testing.T) {
	raw, _ := parseSecret(mustSecret(t))
	h, err := hashSecret(raw, testParams)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("got %q, want a PHC string with the parameters", h)
	}
	p, err := parseHash(h)
	if err != nil {
		t.Fatal(err)
	}
	if !p.matches(raw) {
		t.Fatal("the secret does not match its own hash")
	}
	other, _ := parseSecret(mustSecret(t))
	if p.matches(other) {
		t.Fatal("another secret matches")
	}
	if again, _ := hashSecret(raw, testParams); again == h {
		t.Fatal("two hashes of one secret share a salt")
	}

	// The production parameters are what the package documents.
	if DefaultParams != (Params{Time: 3, MemoryKiB: 64 << 10, Threads: 2}) {
		t.Fatalf("got DefaultParams %+v", DefaultParams)
	}
	start := time.Now()
	if _, err := hashSecret(raw, DefaultParams); err != nil {
		t.Fatal(err)
	}
	t.Logf("argon2id with DefaultParams took %s", time.Since(start))

	parts := strings.Split(h, "$")
	bad := []struct{ name, hash string }{
		{"empty", ""},
		{"argon2i", strings.Replace(h, "argon2id", "argon2i", 1)},
		{"old version", strings.Replace(h, "v=19", "v=16", 1)},
		{"huge memory", strings.Replace(h, "m=64,", "m=4194304,", 1)},
		{"too many passes", strings.Replace(h, "t=1,", "t=100,", 1)},
		{"no threads", strings.Replace(h, "p=1", "p=0", 1)},
		{"garbled parameters", strings.Replace(h, "m=64,t=1,p=1", "m=x", 1)},
		{"bad salt", strings.Join(append(parts[:4:4], "!!", parts[5]), "$")},
		{"short key", strings.Join(append(parts[:5:5], "AAAA"), "$")},
		{"extra field", h + "$x"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseHash(tc.hash); err == nil {
				t.Fatalf("got nil error for %q", tc.hash)
			}
		})
	}
}

func mustSecret(t *testing.T) string {
	t.Helper()
	s, err := newSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLimiter(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	type step struct {
		advance time.Duration
		allowed bool // take succeeds
		refund  bool // the attempt was not a wrong secret
	}
	tests := []struct {
		name  string
		limit Limit
		steps []step
	}{
		{"burst then refused", Limit{Burst: 2, Every: time.Minute}, []step{
			{allowed: true}, {allowed: true}, {allowed: false},
		}},
		{"refills one per period", Limit{Burst: 2, Every: time.Minute}, []step{
			{allowed: true}, {allowed: true}, {advance: 30 * time.Second, allowed: false},
			{advance: 30 * time.Second, allowed: true}, {allowed: false},
			{advance: 10 * time.Minute, allowed: true}, {allowed: true}, {allowed: false},
		}},
		{"refunded attempts cost nothing", Limit{Burst: 1, Every: time.Hour}, []step{
			{allowed: true, refund: true}, {allowed: true, refund: true}, {allowed: true}, {allowed: false},
		}},
		{"zero limit allows nothing", Limit{}, []step{{allowed: false}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newLimiter(tc.limit, c.now)
			for i, st := range tc.steps {
				c.add(st.advance)
				ok, retry := l.take("k")
				if ok != st.allowed {
					t.Fatalf("step %d: got allowed %v, want %v", i, ok, st.allowed)
				}
				if !ok && retry <= 0 {
					t.Fatalf("step %d: refused without a retry time", i)
				}
				if ok && st.refund {
					l.refund("k")
				}
			}
			if ok, _ := l.take("other"); ok != (tc.limit.Burst > 0) {
				t.Fatalf("another key got allowed %v", ok)
			}
		})
	}
}

func TestLimiterBoundsMemory(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	l := newLimiter(Limit{Burst: 1, Every: time.Hour}, c.now)
	for i := range maxBuckets {
		l.take(strconv.Itoa(i))
	}
	if ok, _ := l.take("newcomer"); ok {
		t.Fatal("a new key was admitted past the bound with no bucket to forget")
	}
	c.add(2 * time.Hour) // every bucket full again: forgettable
	if ok, _ := l.take("newcomer"); !ok {
		t.Fatal("got refused, want the full buckets forgotten and the newcomer allowed")
	}
}
