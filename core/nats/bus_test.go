package nats_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/core/nats"
	"github.com/chatgate/chatgate/internal/natstest"
	"github.com/chatgate/chatgate/internal/testkit"
)

func connect(t *testing.T, url, name string) *nats.Bus {
	t.Helper()
	b, err := nats.Connect(nats.Options{URL: url, Name: name, Log: testkit.Logger(t)})
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	return b
}

func recv(t *testing.T, ch <-chan core.Event) core.Event {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
		return core.Event{}
	}
}

func TestBus_DeliversAcrossNodes(t *testing.T) {
	srv := natstest.Start(t)
	a, b := connect(t, srv.URL(), "a"), connect(t, srv.URL(), "b")
	got := make(chan core.Event, 16)
	cancel := b.Subscribe(42, func(e core.Event) { got <- e })

	msg := json.RawMessage(`{"id":"7","content":"hi"}`)
	a.Publish(42, core.MessageEvent(5, msg))
	e := recv(t, got)
	require.Equal(t, core.EventMessage, e.Type)
	require.EqualValues(t, 5, e.Seq)
	require.JSONEq(t, `{"type":"message","seq":5,"message":{"id":"7","content":"hi"}}`, string(e.Data()))

	a.Publish(42, core.TypingEvent("c1", 9))
	e = recv(t, got)
	require.Equal(t, core.EventTyping, e.Type)
	require.Zero(t, e.Seq)

	// Local delivery does not go through the server and is not echoed.
	local := make(chan core.Event, 16)
	cl := a.Subscribe(43, func(e core.Event) { local <- e })
	a.Publish(43, core.TypingEvent("c2", 9))
	recv(t, local)
	a.PublishLocal(42, core.TypingEvent("c3", 9)) // b's subscriber must not see it
	cancel()
	cl()
	// After the last cancel the node is no longer interested: publish
	// again and check by a later event on another user that it never came.
	a.Publish(42, core.TypingEvent("c4", 9))
	probe := make(chan core.Event, 1)
	defer b.Subscribe(44, func(e core.Event) { probe <- e })()
	a.Publish(44, core.TypingEvent("probe", 9))
	recv(t, probe)
	require.Empty(t, got, "events after unsubscribe, or PublishLocal leaking to other nodes")
}

func TestBus_Broadcast(t *testing.T) {
	srv := natstest.Start(t)
	a, b := connect(t, srv.URL(), "a"), connect(t, srv.URL(), "b")
	got := make(chan string, 16)
	b.OnBroadcast(func(m []byte) { got <- string(m) })
	a.OnBroadcast(func(m []byte) { t.Errorf("own broadcast echoed: %s", m) })
	for _, m := range []string{"one", "two", "three"} {
		a.Broadcast([]byte(m))
	}
	for _, want := range []string{"one", "two", "three"} {
		select {
		case m := <-got:
			require.Equal(t, want, m, "broadcasts arrive in order")
		case <-time.After(10 * time.Second):
			t.Fatal("no broadcast")
		}
	}
}

// A NATS restart: the bus reconnects by itself, tells local streams to
// resync (what was published meanwhile is lost to them), and live
// delivery resumes with the subscriptions it held.
func TestBus_ServerRestart(t *testing.T) {
	srv := natstest.Start(t)
	a, b := connect(t, srv.URL(), "a"), connect(t, srv.URL(), "b")
	got := make(chan core.Event, 64)
	defer b.Subscribe(42, func(e core.Event) { got <- e })()
	a.Publish(42, core.MessageEvent(1, json.RawMessage(`{}`)))
	require.EqualValues(t, 1, recv(t, got).Seq)

	srv.Restart()
	// The resync event comes once b has reconnected.
	for e := recv(t, got); e.Type != "_resync"; e = recv(t, got) {
	}
	require.Eventually(t, a.Connected, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		a.Publish(42, core.MessageEvent(2, json.RawMessage(`{}`)))
		select {
		case e := <-got:
			return e.Seq == 2
		case <-time.After(100 * time.Millisecond):
			return false
		}
	}, 10*time.Second, time.Millisecond, "live delivery after the restart")
}
