package core

import (
	"sync"
	"time"
)

// PresenceChange is a user going online or offline.
type PresenceChange struct {
	UserID ID
	Presence
	// store: this node records the change (its own devices caused it; on
	// a cluster, see clusterPresence).
	store bool
}

// PresenceEngine tracks which devices are active. A device is active while
// it holds an open connection or was heard from within OfflineAfter; a user
// is online while any device is. A device that reconnects inside the window
// never changes the user's status, so flaky networks do not flap it.
// Changes are delivered, in order, to the channel returned by Changes.
type PresenceEngine struct {
	offlineAfter time.Duration
	now          func() time.Time

	mu    sync.Mutex
	users map[ID]*userActivity // online users only
	// gone holds users who went offline and whose offline record the
	// store may not have yet, so readers never see a stale last_active_at.
	gone map[ID]Presence
	// forgotten holds devices that logged out, until the window ends: a
	// logged-out device's stream or held poll ends after the logout, and
	// its disconnect, or a request authenticated just before the logout,
	// must not bring the user back online.
	forgotten map[ID]time.Time

	changes chan PresenceChange
}

type userActivity struct {
	devices map[ID]*deviceActivity
}

type deviceActivity struct {
	lastSeen time.Time
	conns    int // open streaming connections
}

// NewPresenceEngine returns an engine that declares a user offline after
// offlineAfter without activity from any device.
func NewPresenceEngine(offlineAfter time.Duration) *PresenceEngine {
	return &PresenceEngine{
		offlineAfter: offlineAfter,
		now:          time.Now,
		users:        make(map[ID]*userActivity),
		gone:         make(map[ID]Presence),
		forgotten:    make(map[ID]time.Time),
		changes:      make(chan PresenceChange, 1<<16),
	}
}

// Changes is where status changes are delivered, in the order they happen.
func (p *PresenceEngine) Changes() <-chan PresenceChange { return p.changes }

func stamp(t time.Time) Time { return Time{t.UTC().Truncate(time.Millisecond)} }

// Touch records activity of a device.
func (p *PresenceEngine) Touch(uid, did ID) { p.update(uid, did, 0) }

// Connect records that a device opened a long-lived connection; it stays
// active until the matching Disconnect and OfflineAfter beyond it.
func (p *PresenceEngine) Connect(uid, did ID) { p.update(uid, did, +1) }

// Disconnect ends one connection recorded by Connect.
func (p *PresenceEngine) Disconnect(uid, did ID) { p.update(uid, did, -1) }

func (p *PresenceEngine) update(uid, did ID, conns int) {
	now := p.now()
	p.mu.Lock()
	if _, gone := p.forgotten[did]; gone {
		p.mu.Unlock()
		return
	}
	u := p.users[uid]
	wentOnline := u == nil
	if wentOnline {
		u = &userActivity{devices: make(map[ID]*deviceActivity, 1)}
		p.users[uid] = u
	}
	d := u.devices[did]
	if d == nil {
		d = &deviceActivity{}
		u.devices[did] = d
	}
	d.lastSeen = now
	d.conns += conns
	if d.conns < 0 {
		d.conns = 0
	}
	if wentOnline {
		p.emit(PresenceChange{uid, Presence{Online, stamp(now)}, true})
	}
	p.mu.Unlock()
}

// emit queues a change; callers hold p.mu so that changes of one user reach
// the channel in the order they happened. A full channel blocks activity
// recording until the consumer catches up (backpressure, not loss).
func (p *PresenceEngine) emit(c PresenceChange) {
	if c.Status == Offline {
		p.gone[c.UserID] = c.Presence
	} else {
		delete(p.gone, c.UserID)
	}
	p.changes <- c
}

// Stored tells the engine that the store now holds pr for uid.
func (p *PresenceEngine) Stored(uid ID, pr Presence) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if g, ok := p.gone[uid]; ok && g == pr {
		delete(p.gone, uid)
	}
}

// Forget removes a device at once (logout); if it was the user's last
// active device the user goes offline now, not after the window.
func (p *PresenceEngine) Forget(uid, did ID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forgotten[did] = p.now()
	u := p.users[uid]
	if u == nil {
		return
	}
	d := u.devices[did]
	delete(u.devices, did)
	if len(u.devices) == 0 {
		delete(p.users, uid)
		last := p.now()
		if d != nil {
			last = d.lastSeen
		}
		p.emit(PresenceChange{uid, Presence{Offline, stamp(last)}, true})
	}
}

// Online reports whether any device of uid is active.
func (p *PresenceEngine) Online(uid ID) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.users[uid] != nil
}

// Snapshot returns the live presence of uid if online, or the offline
// presence of a user who went offline recently and whose record the store
// may not hold yet; ok is false when the store's record is current.
func (p *PresenceEngine) Snapshot(uid ID) (pr Presence, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	u := p.users[uid]
	if u == nil {
		pr, ok = p.gone[uid]
		return pr, ok
	}
	var last time.Time
	for _, d := range u.devices {
		if d.conns > 0 {
			last = p.now()
			break
		}
		if d.lastSeen.After(last) {
			last = d.lastSeen
		}
	}
	return Presence{Online, stamp(last)}, true
}

// Sweep declares offline the users with no active device; it is called
// periodically by the service.
func (p *PresenceEngine) Sweep() {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for did, at := range p.forgotten {
		// Long enough for a long poll held at the logout to end.
		if now.Sub(at) >= p.offlineAfter+MaxPollWait {
			delete(p.forgotten, did)
		}
	}
	for uid, u := range p.users {
		var last time.Time
		for did, d := range u.devices {
			if d.conns > 0 {
				continue
			}
			if now.Sub(d.lastSeen) >= p.offlineAfter {
				if d.lastSeen.After(last) {
					last = d.lastSeen
				}
				delete(u.devices, did)
			}
		}
		if len(u.devices) == 0 {
			delete(p.users, uid)
			p.emit(PresenceChange{uid, Presence{Offline, stamp(last)}, true})
		}
	}
}

// OnlineUsers returns the ids of all online users (for shutdown).
func (p *PresenceEngine) OnlineUsers() []ID {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := make([]ID, 0, len(p.users))
	for id := range p.users {
		ids = append(ids, id)
	}
	return ids
}
