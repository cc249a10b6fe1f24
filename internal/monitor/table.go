package monitor

import (
	"math"
	"net/netip"
	"time"
)

// table is a map bounded to max entries that evicts the least recently
// used one to make room: every piece of per-source, per-subject and
// per-token state lives in one, so an attacker who varies the source or
// the claims costs memory up to the bound and no further. Entries live in
// one slice linked by index (no pointer per entry for the collector to
// scan, no allocation per insert once grown). Not safe for concurrent
// use.
type table[K comparable, V any] struct {
	max   int
	index map[K]int32
	nodes []tableNode[K, V]
	// head is the most recently used entry, tail the least; free heads
	// the list of unused nodes. -1 means none.
	head, tail, free int32
	// evicted counts entries dropped to make room.
	evicted uint64
}

type tableNode[K comparable, V any] struct {
	key        K
	val        V
	prev, next int32
}

func newTable[K comparable, V any](size int) *table[K, V] {
	return &table[K, V]{max: size, index: make(map[K]int32), head: -1, tail: -1, free: -1}
}

// len returns the number of entries.
func (t *table[K, V]) len() int { return len(t.index) }

// get returns the entry for k, marking it used; nil if there is none. The
// pointer is valid until the next put or remove.
func (t *table[K, V]) get(k K) *V {
	i, ok := t.index[k]
	if !ok {
		return nil
	}
	t.touch(i)
	return &t.nodes[i].val
}

// put returns the entry for k, marking it used, and whether it existed; a
// new entry is the zero V, made room for by evicting the least recently
// used one when the table is full. The pointer is valid until the next
// put or remove.
func (t *table[K, V]) put(k K) (v *V, existed bool) {
	if i, ok := t.index[k]; ok {
		t.touch(i)
		return &t.nodes[i].val, true
	}
	var i int32
	switch {
	case t.free >= 0:
		i = t.free
		t.free = t.nodes[i].next
	case len(t.nodes) < t.max:
		if len(t.nodes) == cap(t.nodes) {
			// Grow by doubling but never past max, so the bound is the
			// table's real size.
			grown := make([]tableNode[K, V], len(t.nodes), min(max(2*cap(t.nodes), 64), t.max))
			copy(grown, t.nodes)
			t.nodes = grown
		}
		t.nodes = append(t.nodes, tableNode[K, V]{})
		i = int32(len(t.nodes) - 1)
	default:
		i = t.tail
		t.unlink(i)
		delete(t.index, t.nodes[i].key)
		t.evicted++
	}
	t.nodes[i] = tableNode[K, V]{key: k, prev: -1, next: -1}
	t.index[k] = i
	t.pushFront(i)
	return &t.nodes[i].val, false
}

// remove drops the entry for k, if any.
func (t *table[K, V]) remove(k K) {
	i, ok := t.index[k]
	if !ok {
		return
	}
	t.unlink(i)
	delete(t.index, k)
	t.nodes[i] = tableNode[K, V]{prev: -1, next: t.free}
	t.free = i
}

// each calls fn for every entry, most recently used first, without
// marking any used; fn must not put or remove.
func (t *table[K, V]) each(fn func(k K, v *V)) {
	for i := t.head; i >= 0; i = t.nodes[i].next {
		fn(t.nodes[i].key, &t.nodes[i].val)
	}
}

func (t *table[K, V]) touch(i int32) {
	if t.head == i {
		return
	}
	t.unlink(i)
	t.pushFront(i)
}

func (t *table[K, V]) unlink(i int32) {
	n := &t.nodes[i]
	if n.prev >= 0 {
		t.nodes[n.prev].next = n.next
	} else {
		t.head = n.next
	}
	if n.next >= 0 {
		t.nodes[n.next].prev = n.prev
	} else {
		t.tail = n.prev
	}
	n.prev, n.next = -1, -1
}

func (t *table[K, V]) pushFront(i int32) {
	n := &t.nodes[i]
	n.prev, n.next = -1, t.head
	if t.head >= 0 {
		t.nodes[t.head].prev = i
	}
	t.head = i
	if t.tail < 0 {
		t.tail = i
	}
}

// window counts events in a sliding window of a given size in 16 bytes,
// estimated from two fixed buckets (the current one and the one before,
// weighted by how much of it the sliding window still covers).
type window struct {
	// start is the start of the current bucket in Unix nanoseconds.
	start     int64
	cur, prev uint32
}

// add counts one event at t and returns the estimated count within size
// before it, this one included. An event older than the current bucket
// (out of order) counts in the current bucket.
func (w *window) add(t time.Time, size time.Duration) int {
	now, sz := t.UnixNano(), int64(size)
	b := now - now%sz
	switch {
	case b == w.start:
	case b == w.start+sz:
		w.prev, w.cur, w.start = w.cur, 0, b
	case b > w.start:
		w.prev, w.cur, w.start = 0, 0, b
	}
	if w.cur < math.MaxUint32 {
		w.cur++
	}
	covered := 1 - float64(now-w.start)/float64(sz)
	if covered < 0 {
		covered = 0
	}
	return int(float64(w.prev)*covered) + int(w.cur)
}

// loopback is the one network every loopback address belongs to: the
// CLI on Vigil's host may come over 127.0.0.1 or ::1.
var loopback = netip.MustParsePrefix("127.0.0.0/8")

// network is addr's network of the given prefix lengths (IPv4-mapped
// IPv6 addresses count as IPv4, every loopback address as 127.0.0.0/8);
// the zero Prefix for an invalid addr.
func network(addr netip.Addr, v4, v6 int) netip.Prefix {
	if !addr.IsValid() {
		return netip.Prefix{}
	}
	addr = addr.Unmap().WithZone("")
	if addr.IsLoopback() {
		return loopback
	}
	bits := v6
	if addr.Is4() {
		bits = v4
	}
	p, err := addr.Prefix(bits)
	if err != nil {
		return netip.Prefix{}
	}
	return p
}
