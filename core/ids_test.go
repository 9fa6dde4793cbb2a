package core

import (
	"encoding/json"
	"math"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeClock is a settable clock for a Snowflake's now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func newTestSnowflake(t *testing.T, node int, start time.Time) (*Snowflake, *fakeClock) {
	t.Helper()
	s, err := NewSnowflake(node)
	require.NoError(t, err)
	clk := &fakeClock{t: start}
	s.now = clk.now
	return s, clk
}

func TestSnowflakeLayout(t *testing.T) {
	at := Epoch.Add(1234567 * time.Millisecond)
	s, _ := newTestSnowflake(t, 37, at)
	id := s.Next()
	assert.Equal(t, at, IDTime(id))
	assert.Equal(t, uint64(37), uint64(id)>>seqBits&MaxNodeID, "node bits")
	assert.Equal(t, uint64(0), uint64(id)&(1<<seqBits-1), "first id of a millisecond has seq 0")
	assert.Equal(t, id+1, s.Next(), "same millisecond: next seq")
}

func TestSnowflakeNodeRange(t *testing.T) {
	for _, n := range []int{-1, MaxNodeID + 1, 1 << 20} {
		_, err := NewSnowflake(n)
		assert.Error(t, err, "node %d", n)
	}
	for _, n := range []int{0, 1, MaxNodeID} {
		_, err := NewSnowflake(n)
		assert.NoError(t, err, "node %d", n)
	}
}

func TestSnowflakeMonotonicWhenClockGoesBack(t *testing.T) {
	start := Epoch.Add(365 * 24 * time.Hour)
	s, clk := newTestSnowflake(t, 5, start)

	var last ID
	next := func() ID {
		id := s.Next()
		require.Greater(t, id, last, "ids must strictly increase")
		last = id
		return id
	}
	next()
	clk.set(start.Add(10 * time.Millisecond))
	high := next()

	// The clock steps back a whole second: ids keep increasing and stay on
	// the last issued millisecond instead of reissuing old times.
	clk.set(start.Add(-time.Second))
	for i := 0; i < 100; i++ {
		id := next()
		assert.Equal(t, IDTime(high), IDTime(id))
	}
	// Exhausting the sequence borrows the next millisecond, still unique.
	for i := 0; i < 2*(1<<seqBits); i++ {
		next()
	}
	assert.True(t, IDTime(last).After(IDTime(high)), "borrowed from the future")
	borrowed := IDTime(last)

	// Once the clock passes the borrowed time, ids follow it again.
	clk.set(borrowed.Add(5 * time.Millisecond))
	id := next()
	assert.Equal(t, borrowed.Add(5*time.Millisecond), IDTime(id))
	assert.Equal(t, uint64(0), uint64(id)&(1<<seqBits-1))
}

func TestSnowflakeManyInOneMillisecond(t *testing.T) {
	at := Epoch.Add(time.Hour)
	s, _ := newTestSnowflake(t, 1, at)
	seen := make(map[ID]bool)
	var last ID
	for i := 0; i < 3*(1<<seqBits)+7; i++ {
		id := s.Next()
		require.False(t, seen[id], "duplicate id %d", id)
		require.Greater(t, id, last)
		seen[id], last = true, id
	}
}

func TestSnowflakeConcurrent(t *testing.T) {
	s, err := NewSnowflake(3)
	require.NoError(t, err)
	const workers, per = 4, 2000
	out := make([][]ID, workers)
	var wg sync.WaitGroup
	for w := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				out[w] = append(out[w], s.Next())
			}
		}()
	}
	wg.Wait()
	seen := make(map[ID]bool, workers*per)
	for _, ids := range out {
		for i, id := range ids {
			require.False(t, seen[id], "duplicate id")
			seen[id] = true
			if i > 0 {
				require.Greater(t, id, ids[i-1], "each caller sees increasing ids")
			}
		}
	}
}

func TestSnowflakeObserve(t *testing.T) {
	// A restarted node whose clock is behind the ids already stored.
	s, clk := newTestSnowflake(t, 2, Epoch.Add(time.Hour))
	stored := ID(uint64(2*time.Hour/time.Millisecond)<<(nodeBits+seqBits) | 9<<seqBits | 17)
	s.Observe(stored)
	id := s.Next()
	assert.Greater(t, id, stored)
	// Observing an older id changes nothing.
	s.Observe(ID(1))
	assert.Greater(t, s.Next(), id)
	// When the clock passes the stored time, ids follow the clock again.
	clk.set(Epoch.Add(3 * time.Hour))
	assert.Equal(t, Epoch.Add(3*time.Hour), IDTime(s.Next()))
}

func TestIDJSON(t *testing.T) {
	for _, v := range []ID{1, 42, 1 << 53, 1<<53 + 1, math.MaxUint64} {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		assert.Equal(t, `"`+strconv.FormatUint(uint64(v), 10)+`"`, string(b))
		var back ID
		require.NoError(t, json.Unmarshal(b, &back))
		assert.Equal(t, v, back)
	}

	// Inside a struct, and as a pointer (absent stays nil).
	var in struct {
		To   *ID  `json:"to"`
		Many []ID `json:"many"`
	}
	require.NoError(t, json.Unmarshal([]byte(`{"many":["9007199254740993","7"]}`), &in))
	assert.Nil(t, in.To)
	assert.Equal(t, []ID{9007199254740993, 7}, in.Many)
	out, err := json.Marshal(Message{ID: 9007199254740993, From: 1, To: 2})
	require.NoError(t, err)
	assert.Contains(t, string(out), `"id":"9007199254740993"`)
	assert.NotContains(t, string(out), `"group_id"`, "zero ids are left out")

	// Only positive decimal strings are ids.
	for _, bad := range []string{`5`, `9007199254740993`, `"0"`, `"-1"`, `""`, `"abc"`, `"1.5"`, `"1e3"`, `" 1"`,
		`"18446744073709551616"`, `null1`, `true`, `{}`, `["1"]`, `"`} {
		var id ID
		err := id.UnmarshalJSON([]byte(bad))
		var ie *IDError
		assert.ErrorAs(t, err, &ie, "%s must be refused", bad)
		assert.Equal(t, ID(0), id, "a refused value leaves the id unchanged")
	}
	_, err = ParseID("0")
	assert.Error(t, err)
	v, err := ParseID("18446744073709551615")
	require.NoError(t, err)
	assert.Equal(t, ID(math.MaxUint64), v)
	assert.Equal(t, "18446744073709551615", v.String())
}

func TestTimeJSON(t *testing.T) {
	loc := time.FixedZone("X", 5*3600+1800)
	tm := Time{time.Date(2025, 3, 4, 10, 20, 30, 123456789, loc)}
	b, err := json.Marshal(tm)
	require.NoError(t, err)
	assert.Equal(t, `"2025-03-04T04:50:30.123Z"`, string(b), "UTC with milliseconds")
	b, err = json.Marshal(Time{time.Date(2025, 3, 4, 10, 20, 30, 0, time.UTC)})
	require.NoError(t, err)
	assert.Equal(t, `"2025-03-04T10:20:30.000Z"`, string(b), "milliseconds always written")
	b, err = json.Marshal(Time{})
	require.NoError(t, err)
	assert.Equal(t, `null`, string(b))

	var back Time
	require.NoError(t, json.Unmarshal([]byte(`"2025-03-04T04:50:30.123Z"`), &back))
	assert.True(t, back.Equal(tm.Truncate(time.Millisecond)))
	now := Now()
	assert.Equal(t, now.Time, now.Truncate(time.Millisecond))
}

// After Fence, no id is minted: Next blocks (the node exits instead).
func TestSnowflakeFence(t *testing.T) {
	s, err := NewSnowflake(3)
	require.NoError(t, err)
	s.Next()
	s.Fence()
	got := make(chan ID, 1)
	go func() { got <- s.Next() }() // parked for good: the test binary's exit ends it
	select {
	case id := <-got:
		t.Fatalf("minted %d after Fence", id)
	case <-time.After(100 * time.Millisecond): // a bounded negative check
	}
}
