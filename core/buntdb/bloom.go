package buntdb

import (
	"hash/maphash"
	"math/bits"
)

// seen is a scalable Bloom filter of the client_msg_id keys ever written.
// Nearly every send carries a client_msg_id that was never used before,
// and proving that by a btree search cost ~5 us of cache misses in a tree
// holding every message's keys; the filter proves it in a few hundred ns.
// It has no false negatives (every key written is added, and keys of this
// kind are never deleted), so a "no" is final; a "maybe" falls back to the
// search. It lives in memory only: Open fills it from the stored keys.
type seen struct {
	seed   maphash.Seed
	layers []*bloomLayer
}

// A layer holds up to cap keys at about 1% false positives (10 bits and 7
// probes per key); a full filter adds a layer twice as big, so the total
// false-positive rate stays a few percent however many keys there are.
type bloomLayer struct {
	bits []uint64
	n    int
	cap  int
}

const (
	bloomFirstCap = 1 << 16
	bloomBitsPer  = 10
	bloomProbes   = 7
)

func newSeen() *seen {
	s := &seen{seed: maphash.MakeSeed()}
	s.grow(bloomFirstCap)
	return s
}

func (s *seen) grow(capacity int) {
	words := (capacity*bloomBitsPer + 63) / 64
	s.layers = append(s.layers, &bloomLayer{bits: make([]uint64, words), cap: capacity})
}

// probes yields the bit positions of key in a layer of m bits (double
// hashing from one 64-bit hash).
func probes(h uint64, m uint64, fn func(bit uint64) bool) bool {
	h1, h2 := h, bits.RotateLeft64(h, 32)|1
	for i := uint64(0); i < bloomProbes; i++ {
		if !fn((h1 + i*h2) % m) {
			return false
		}
	}
	return true
}

func (s *seen) add(key string) {
	l := s.layers[len(s.layers)-1]
	if l.n >= l.cap {
		s.grow(l.cap * 2)
		l = s.layers[len(s.layers)-1]
	}
	m := uint64(len(l.bits)) * 64
	probes(maphash.String(s.seed, key), m, func(b uint64) bool {
		l.bits[b/64] |= 1 << (b % 64)
		return true
	})
	l.n++
}

// mayHave is false only for keys never added.
func (s *seen) mayHave(key string) bool {
	h := maphash.String(s.seed, key)
	for _, l := range s.layers {
		m := uint64(len(l.bits)) * 64
		if probes(h, m, func(b uint64) bool { return l.bits[b/64]&(1<<(b%64)) != 0 }) {
			return true
		}
	}
	return false
}
