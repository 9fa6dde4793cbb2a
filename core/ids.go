package core

import (
	"errors"
	"strconv"
	"sync"
	"time"
)

// ID is a 64-bit identifier of a user, device, group or message. It travels
// as a decimal string in JSON because browsers lose precision above 2^53.
type ID uint64

// String returns the decimal form used on the wire and in storage keys.
func (id ID) String() string { return strconv.FormatUint(uint64(id), 10) }

// MarshalJSON encodes the id as a JSON string.
func (id ID) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 22)
	b = append(b, '"')
	b = strconv.AppendUint(b, uint64(id), 10)
	return append(b, '"'), nil
}

// IDError reports an id that is not a positive decimal string.
type IDError struct{ Value string }

func (e *IDError) Error() string { return "id must be a positive decimal string, got " + e.Value }

// UnmarshalJSON accepts only the string form: a number would already have
// lost precision in a JavaScript client, so it is refused rather than guessed.
func (id *ID) UnmarshalJSON(b []byte) error {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return &IDError{string(b)}
	}
	v, err := ParseID(string(b[1 : len(b)-1]))
	if err != nil {
		return &IDError{string(b)}
	}
	*id = v
	return nil
}

// ParseID parses a decimal id; zero is never a valid id.
func ParseID(s string) (ID, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v == 0 {
		return 0, errors.New("id must be a positive decimal string")
	}
	return ID(v), nil
}

// Snowflake layout: 41 bits of milliseconds since Epoch, 10 bits of node id,
// 12 bits of sequence within the millisecond.
const (
	nodeBits = 10
	seqBits  = 12
	// MaxNodeID is the largest node id a Snowflake accepts.
	MaxNodeID = 1<<nodeBits - 1
)

// Epoch is the snowflake epoch (2024-01-01T00:00:00Z); 41 bits of
// milliseconds last about 69 years from it.
var Epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Snowflake generates unique, time-ordered ids. It never goes backwards: when
// the wall clock steps back it keeps counting from the last millisecond it
// issued, borrowing from the future until the clock catches up.
type Snowflake struct {
	mu     sync.Mutex
	node   uint64
	lastMS uint64
	seq    uint64
	now    func() time.Time
	fenced bool
}

// NewSnowflake returns a generator for node (0..MaxNodeID).
func NewSnowflake(node int) (*Snowflake, error) {
	if node < 0 || node > MaxNodeID {
		return nil, errors.New("snowflake node id out of range 0..1023")
	}
	return &Snowflake{node: uint64(node), now: time.Now}, nil
}

// Next returns a new id, strictly greater than every id it returned before.
func (s *Snowflake) Next() ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fenced {
		// The node id may belong to another node now: never mint again.
		// The caller waits forever; the process is on its way out.
		s.mu.Unlock()
		select {}
	}
	ms := uint64(s.now().Sub(Epoch).Milliseconds())
	if ms <= s.lastMS {
		// Same millisecond, or the clock went backwards: stay on lastMS.
		s.seq++
		if s.seq >= 1<<seqBits {
			s.lastMS++
			s.seq = 0
		}
	} else {
		s.lastMS = ms
		s.seq = 0
	}
	return ID(s.lastMS<<(nodeBits+seqBits) | s.node<<seqBits | s.seq)
}

// Fence stops the generator for good: every later Next blocks. A node
// calls it when it can no longer be sure it holds its node id (a lost
// Consul lock), before anyone else could take the id.
func (s *Snowflake) Fence() {
	s.mu.Lock()
	s.fenced = true
	s.mu.Unlock()
}

// SetClock replaces the wall clock (tests inject skew through it).
func (s *Snowflake) SetClock(now func() time.Time) {
	s.mu.Lock()
	s.now = now
	s.mu.Unlock()
}

// Node is the generator's node id.
func (s *Snowflake) Node() int { return int(s.node) }

// Observe makes the generator issue only ids above id; a store calls it at
// start so a restarted node with a slow clock never reissues an id.
func (s *Snowflake) Observe(id ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ms := uint64(id) >> (nodeBits + seqBits)
	if ms > s.lastMS {
		s.lastMS, s.seq = ms, 1<<seqBits-1
	}
}

// IDTime returns the wall-clock time encoded in a snowflake id.
func IDTime(id ID) time.Time {
	return Epoch.Add(time.Duration(uint64(id)>>(nodeBits+seqBits)) * time.Millisecond)
}
