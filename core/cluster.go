package core

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"sync"
	"time"
)

// ClusterBus is a Bus that spans the nodes of a cluster (the NATS adapter).
// The core finds it by type assertion on the Bus it is given, as net/http
// finds a Flusher: a single node passes a LocalBus and nothing changes.
//
// Publish reaches the user's subscribers on every node, at most once: the
// store stays the truth, and a stream that misses an event finds the gap at
// the next one or when the adapter delivers ResyncEvent (after a reconnect
// or a dropped message), and reads the store.
type ClusterBus interface {
	Bus
	// PublishLocal reaches only this node's subscribers.
	PublishLocal(to ID, ev Event)
	// Broadcast sends a presence message to every other node, best effort.
	Broadcast(msg []byte)
	// OnBroadcast sets the handler of the other nodes' messages, called in
	// the order each node sent them; it must not block for long.
	OnBroadcast(fn func(msg []byte))
}

// eventResync is internal: an adapter delivers it to every local
// subscriber when live events may have been lost on the way (a bus
// reconnect, a dropped message). A stream then reads the store, a long
// poll wakes and reads it.
const eventResync = "_resync"

// ResyncEvent returns the internal event that makes the streams it reaches
// read the store again.
func ResyncEvent() Event { return Event{Type: eventResync} }

// Cluster presence. Each node tracks its own devices (PresenceEngine) and
// tells the others which of its users are online: a message per change and,
// every beat, the whole list (so a lost message heals within a beat and a
// node that starts learns everything). Every node thus holds the cluster's
// online set and computes the same status changes; each delivers them only
// to the friends connected to it, so a friend hears of a change once, from
// its own node. A node that stops beating is dropped after expireAfter and
// its users go offline unless active elsewhere; a node that comes back
// under the same node id beats under a new instance id, so nothing of its
// old life counts. No store round trip and no lock between nodes is needed.
type clusterPresence struct {
	local  *PresenceEngine
	bus    ClusterBus
	log    *slog.Logger
	self   uint64 // this process's instance id, random per start
	beat   time.Duration
	expire time.Duration
	now    func() time.Time

	mu      sync.Mutex
	localOn map[ID]Time // users online here, as announced
	nodes   map[uint64]*peerNode
	remote  map[ID]int // how many live peers have the user online
	gone    map[ID]Presence
	changes chan PresenceChange
	inbox   chan []byte
	// onRevoke is told of devices logged out on other nodes (set before
	// run starts).
	onRevoke func(ID)
}

type peerNode struct {
	seen  time.Time
	users map[ID]Time
}

// presenceMsg is what nodes tell each other.
type presenceMsg struct {
	Kind     string `json:"k"`           // "u": a user's status here; "b": beat; "x": leaving; "r": device logged out
	Instance uint64 `json:"i"`           // sender
	User     ID     `json:"u,omitempty"` // "u"
	Online   bool   `json:"o,omitempty"` // "u"
	At       Time   `json:"t,omitzero"`  // "u": last activity
	Users    []ID   `json:"n,omitempty"` // "b": every user online at the sender
	Device   ID     `json:"d,omitempty"` // "r"
}

func newClusterPresence(local *PresenceEngine, bus ClusterBus, offlineAfter time.Duration, log *slog.Logger) *clusterPresence {
	var b [8]byte
	_, _ = rand.Read(b[:])
	c := &clusterPresence{
		local: local, bus: bus, log: log,
		self: binary.LittleEndian.Uint64(b[:]),
		// Beats several times per half window: a peer is dropped after
		// missing a few in a row, so one lost beat or a short bus restart
		// flaps nobody, and a dead node's users are offline within the
		// offline window.
		beat:    max(offlineAfter/6, 10*time.Millisecond),
		expire:  max(offlineAfter/2, 30*time.Millisecond),
		now:     time.Now,
		localOn: make(map[ID]Time),
		nodes:   make(map[uint64]*peerNode),
		remote:  make(map[ID]int),
		gone:    make(map[ID]Presence),
		changes: make(chan PresenceChange, 1<<16),
		inbox:   make(chan []byte, 4096),
	}
	bus.OnBroadcast(c.receive)
	return c
}

// receive is the bus handler: it queues and returns at once. A full queue
// drops the message; the next beat repairs what it carried.
func (c *clusterPresence) receive(msg []byte) {
	select {
	case c.inbox <- msg:
	default:
	}
}

// run owns the cluster view: local changes, peers' messages, beats.
func (c *clusterPresence) run(ctx context.Context) {
	t := time.NewTicker(c.beat)
	defer t.Stop()
	c.sendBeat()
	for {
		select {
		case <-ctx.Done():
			return
		case ch := <-c.local.Changes():
			c.applyLocal(ch)
		case msg := <-c.inbox:
			c.applyRemote(msg)
		case <-t.C:
			c.sendBeat()
			c.expirePeers()
		}
	}
}

func (c *clusterPresence) send(m presenceMsg) {
	m.Instance = c.self
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	c.bus.Broadcast(b)
}

func (c *clusterPresence) sendBeat() {
	c.mu.Lock()
	users := make([]ID, 0, len(c.localOn))
	for id := range c.localOn {
		users = append(users, id)
	}
	c.mu.Unlock()
	c.send(presenceMsg{Kind: "b", Users: users})
}

// revoke tells the other nodes a device logged out (their token caches).
func (c *clusterPresence) revoke(did ID) { c.send(presenceMsg{Kind: "r", Device: did}) }

// leave tells the others this node is going, so its users stop counting at
// once rather than when its beats are missed.
func (c *clusterPresence) leave() { c.send(presenceMsg{Kind: "x"}) }

// onlineLocked reports the cluster-wide status as this node knows it.
func (c *clusterPresence) onlineLocked(uid ID) bool {
	_, here := c.localOn[uid]
	return here || c.remote[uid] > 0
}

func (c *clusterPresence) applyLocal(ch PresenceChange) {
	c.mu.Lock()
	was := c.onlineLocked(ch.UserID)
	if ch.Status == Online {
		c.localOn[ch.UserID] = ch.LastActiveAt
	} else {
		delete(c.localOn, ch.UserID)
	}
	c.transitionLocked(ch.UserID, was, ch.LastActiveAt, true)
	c.mu.Unlock()
	c.send(presenceMsg{Kind: "u", User: ch.UserID, Online: ch.Status == Online, At: ch.LastActiveAt})
}

// transitionLocked emits a change when uid's cluster status differs from
// was. Changes are queued under c.mu so every user's reach the consumer in
// order.
func (c *clusterPresence) transitionLocked(uid ID, was bool, at Time, store bool) {
	now := c.onlineLocked(uid)
	if now == was {
		return
	}
	p := Presence{Status: Offline, LastActiveAt: at}
	if now {
		p.Status = Online
		delete(c.gone, uid)
	} else if store {
		// Until this node has stored it, readers get it from here; the
		// other nodes read the store, whose record is at worst an
		// "online" that presenceOf shows as offline.
		c.gone[uid] = p
	}
	// store is set on the node whose own device caused the change (for a
	// dead peer, on every node: the write is idempotent and rare).
	c.changes <- PresenceChange{uid, p, store}
}

func (c *clusterPresence) peer(inst uint64) *peerNode {
	n := c.nodes[inst]
	if n == nil {
		n = &peerNode{users: make(map[ID]Time)}
		c.nodes[inst] = n
	}
	n.seen = c.now()
	return n
}

func (c *clusterPresence) applyRemote(b []byte) {
	var m presenceMsg
	if err := json.Unmarshal(b, &m); err != nil || m.Instance == c.self {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch m.Kind {
	case "u":
		n := c.peer(m.Instance)
		c.setRemoteLocked(n, m.User, m.Online, m.At)
	case "b":
		n := c.peer(m.Instance)
		at := stamp(c.now())
		in := make(map[ID]bool, len(m.Users))
		for _, id := range m.Users {
			in[id] = true
			if _, ok := n.users[id]; !ok {
				c.setRemoteLocked(n, id, true, at)
			}
		}
		for id, last := range n.users {
			if !in[id] {
				c.setRemoteLocked(n, id, false, last)
			}
		}
	case "x":
		if n := c.nodes[m.Instance]; n != nil {
			c.dropLocked(m.Instance, n)
		}
	case "r":
		if c.onRevoke != nil {
			c.onRevoke(m.Device)
		}
	}
}

func (c *clusterPresence) setRemoteLocked(n *peerNode, uid ID, online bool, at Time) {
	_, had := n.users[uid]
	if online == had {
		if online {
			n.users[uid] = at
		}
		return
	}
	was := c.onlineLocked(uid)
	if online {
		n.users[uid] = at
		c.remote[uid]++
	} else {
		delete(n.users, uid)
		if c.remote[uid]--; c.remote[uid] <= 0 {
			delete(c.remote, uid)
		}
	}
	c.transitionLocked(uid, was, at, false)
}

func (c *clusterPresence) dropLocked(inst uint64, n *peerNode) {
	delete(c.nodes, inst)
	for uid, last := range n.users {
		was := c.onlineLocked(uid)
		if c.remote[uid]--; c.remote[uid] <= 0 {
			delete(c.remote, uid)
		}
		// Every node sees the peer go; each stores the offline record
		// (the same one, idempotent), since the dead node cannot.
		c.transitionLocked(uid, was, last, true)
	}
}

func (c *clusterPresence) expirePeers() {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for inst, n := range c.nodes {
		if now.Sub(n.seen) >= c.expire {
			c.log.Warn("cluster peer stopped beating; its users no longer count", "instance", inst, "users", len(n.users))
			c.dropLocked(inst, n)
		}
	}
}

// Online reports whether any device of uid is active on any node.
func (c *clusterPresence) Online(uid ID) bool {
	if c.local.Online(uid) {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.remote[uid] > 0
}

// Snapshot is PresenceEngine.Snapshot over the cluster.
func (c *clusterPresence) Snapshot(uid ID) (Presence, bool) {
	if p, ok := c.local.Snapshot(uid); ok && p.Status == Online {
		return p, true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.remote[uid] > 0 {
		var last Time
		for _, n := range c.nodes {
			if t, ok := n.users[uid]; ok && t.After(last.Time) {
				last = t
			}
		}
		return Presence{Status: Online, LastActiveAt: last}, true
	}
	p, ok := c.gone[uid]
	return p, ok
}

// Stored tells the view that the store holds pr for uid.
func (c *clusterPresence) Stored(uid ID, pr Presence) {
	c.local.Stored(uid, pr)
	c.mu.Lock()
	defer c.mu.Unlock()
	if g, ok := c.gone[uid]; ok && g == pr {
		delete(c.gone, uid)
	}
}

// onlineElsewhere reports whether another node has uid online.
func (c *clusterPresence) onlineElsewhere(uid ID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.remote[uid] > 0
}
