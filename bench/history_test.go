package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFillSeg checks the send rates taken from a fill's samples.
func TestFillSeg(t *testing.T) {
	// 1,000 sends/s for 10 s, then 500/s for 10 s, sampled every 100 ms.
	var seg fillSeg
	n := int64(0)
	for at := 100 * time.Millisecond; at <= 20*time.Second; at += 100 * time.Millisecond {
		if at <= 10*time.Second {
			n += 100
		} else {
			n += 50
		}
		seg.samples = append(seg.samples, fillSample{at, n})
	}
	seg.dur = 20 * time.Second
	assert.InDelta(t, 1000, seg.rate(time.Second, 5*time.Second), 1)
	assert.InDelta(t, 500, seg.rate(15*time.Second, 20*time.Second), 1)
	assert.InDelta(t, 750, seg.rate(5*time.Second, 15*time.Second), 1)
	assert.InDelta(t, 50, seg.count(50*time.Millisecond), 0.01, "interpolated from the start")
	assert.InDelta(t, 1000, seg.startRate(5*time.Second), 1)
	assert.InDelta(t, 500, seg.endRate(5*time.Second), 1)
	// A fill shorter than three windows is measured over thirds.
	assert.Equal(t, 20*time.Second/3, seg.window(10*time.Second))
	assert.Zero(t, seg.rate(time.Second, time.Second))
}

func TestParseCount(t *testing.T) {
	for in, want := range map[string]int64{"5000000": 5_000_000, "5M": 5_000_000, "1.5M": 1_500_000, "500k": 500_000, "5_000": 5000, "0": 0} {
		got, err := parseCount(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "x", "-5", "5G"} {
		_, err := parseCount(in)
		assert.Error(t, err, in)
	}
	cps, err := checkpoints("", 5_000_000)
	require.NoError(t, err)
	assert.Equal(t, []int64{1_000_000, 5_000_000}, cps)
	cps, err = checkpoints("", 50_000)
	require.NoError(t, err)
	assert.Equal(t, []int64{50_000}, cps)
	cps, err = checkpoints("1M,2M", 5_000_000)
	require.NoError(t, err)
	assert.Equal(t, []int64{1_000_000, 2_000_000, 5_000_000}, cps, "N is always the last checkpoint")
	_, err = checkpoints("2M,1M", 5_000_000)
	assert.Error(t, err)
	_, err = checkpoints("6M", 5_000_000)
	assert.Error(t, err)
}

// TestFillBody checks the messages a fill sends: valid JSON of the
// payload's size, the group share, the same message for the same index.
func TestFillBody(t *testing.T) {
	users := make([]account, 40)
	for i := range users {
		users[i] = account{ID: strings.Repeat("1", 17) + string(rune('0'+i%10)) + string(rune('0'+i/10)), Token: "t"}
	}
	fl := newFiller(fillPlan{users: users, groups: []string{"g0", "g1"}, groupN: 20, share: 0.1, payload: 100, senders: 1, tag: "x"})
	groups := 0
	const n = 20000
	for i := range int64(n) {
		var m struct {
			To          string `json:"to"`
			GroupID     string `json:"group_id"`
			Content     string `json:"content"`
			ClientMsgID string `json:"client_msg_id"`
		}
		b := fl.body(nil, i)
		require.NoError(t, json.Unmarshal(b, &m), "%s", b)
		require.Len(t, m.Content, 100)
		require.NotContains(t, m.Content, "  ")
		from, k, g := fl.pick(i)
		if g >= 0 {
			groups++
			require.Equal(t, fl.plan.groups[g], m.GroupID)
			require.Equal(t, g, from/fl.plan.groupN, "the sender is a member")
		} else {
			require.Equal(t, users[(from+k)%len(users)].ID, m.To)
			require.NotEqual(t, from, (from+k)%len(users))
		}
		require.Equal(t, "x-"+strconv.FormatInt(i, 10), m.ClientMsgID)
	}
	assert.InDelta(t, 0.1, float64(groups)/n, 0.01)
	assert.Equal(t, fl.body(nil, 7), fl.body(nil, 7))
	assert.NotEqual(t, fl.body(nil, 7), fl.body(nil, 8))
	assert.Equal(t, "d_5_12", directConv("12", "5"))
}
