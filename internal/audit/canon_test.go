package audit

import (
	"encoding/json"
	"testing"
)

// canonicalSlow is the definition the fast encoder must match.
func canonicalSlow(seq, timeNs int64, typ, actor, target, session, source string, data []byte) []byte {
	b, _ := json.Marshal([]any{seq, timeNs, typ, actor, target, session, source, json.RawMessage(data)})
	return b
}

func TestCanonicalMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `quote " back \ slash`, "<script>&amp;</script>", "ctl \x00\x01\x1f\x7f",
		"\b\f\n\r\t", "utf8 é 漢字 🙂", "bad \xff\xfe utf8", "line\u2028para\u2029", "trunc \xe2\x82"} {
		got := appendCanonical(nil, 42, -7, s, "a", "t", "s", "1.2.3.4:5", []byte(`{"k":"v"}`))
		want := canonicalSlow(42, -7, s, "a", "t", "s", "1.2.3.4:5", []byte(`{"k":"v"}`))
		if string(got) != string(want) {
			t.Errorf("canonical(%q):\n got %s\nwant %s", s, got, want)
		}
	}
}

func FuzzCanonical(f *testing.F) {
	f.Add("x", "<>&\u2028\xff")
	f.Fuzz(func(t *testing.T, a, b string) {
		got := appendCanonical(nil, 1, 2, a, b, a, b, a, []byte(`{}`))
		want := canonicalSlow(1, 2, a, b, a, b, a, []byte(`{}`))
		if string(got) != string(want) {
			t.Fatalf("got %s, want %s", got, want)
		}
	})
}
