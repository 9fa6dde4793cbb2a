// Package core is chatgate's domain: accounts, friendships, groups,
// durable messages with per-user inboxes, presence and push. It knows
// nothing of HTTP or of any database; it talks to the outside through the
// Store, Bus and Notifier interfaces.
package core

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config holds the core's tunables.
type Config struct {
	HeartbeatInterval time.Duration // what clients are told to send
	OfflineAfter      time.Duration // silence after which a user is offline
	Limits            Limits        // rate limits; the zero value limits nothing
	Observer          Observer      // told what happens, for metrics; nil: nobody
}

// Service is the chat core. Create it with New and stop it with Close.
type Service struct {
	cfg      Config
	store    Store
	bus      Bus
	ids      *Snowflake
	log      *slog.Logger
	presence *PresenceEngine
	// view answers "is this user online" for the whole deployment: the
	// engine itself on a single node, the cluster view on a cluster.
	view    presenceView
	cluster *clusterPresence // nil on a single node
	tokens  *tokenCache      // nil on a single node (its store is in process)
	limits  *limiter
	pusher  *pusher
	obs     Observer

	mbMu      sync.Mutex
	mailboxes map[ID]*mailbox // polling devices, by device id
	streams   atomic.Int64
	polls     atomic.Int64
	draining  chan struct{} // closed by Drain
	drainOnce sync.Once

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// presenceView is what the service asks of presence besides recording
// activity.
type presenceView interface {
	Online(uid ID) bool
	Snapshot(uid ID) (Presence, bool)
	Stored(uid ID, p Presence)
}

// New starts a Service. It owns three goroutines (presence sweep, presence
// fan-out, push outbox), and a fourth on a cluster (the cluster presence
// view), which Close stops. A bus that is a ClusterBus makes it a node of
// a cluster.
func New(cfg Config, store Store, bus Bus, notifier Notifier, ids *Snowflake, log *slog.Logger) *Service {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		cfg: cfg, store: store, bus: bus, ids: ids, log: log,
		presence:  NewPresenceEngine(cfg.OfflineAfter),
		pusher:    newPusher(store, notifier, log),
		limits:    newLimiter(cfg.Limits),
		obs:       cfg.Observer,
		mailboxes: make(map[ID]*mailbox),
		draining:  make(chan struct{}),
		cancel:    cancel,
	}
	if s.obs == nil {
		s.obs = nopObserver{}
	}
	s.view = s.presence
	if cb, ok := bus.(ClusterBus); ok {
		s.cluster = newClusterPresence(s.presence, cb, cfg.OfflineAfter, log)
		s.view = s.cluster
		s.tokens = newTokenCache(tokenTTL, 1<<20)
		s.cluster.onRevoke = s.tokens.revoke
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.cluster.run(ctx) }()
	}
	s.wg.Add(3)
	go func() { defer s.wg.Done(); s.sweepLoop(ctx) }()
	go func() { defer s.wg.Done(); s.presenceLoop(ctx) }()
	go func() { defer s.wg.Done(); s.pusher.run(ctx) }()
	return s
}

// Close stops the background work. Online users are stored as offline with
// their last activity, since nobody will be connected to this node after
// it (unless, on a cluster, they are active on another node).
func (s *Service) Close() {
	if s.cluster != nil {
		s.cluster.leave()
	}
	for _, uid := range s.presence.OnlineUsers() {
		if p, ok := s.presence.Snapshot(uid); ok && p.Status == Online {
			if s.cluster != nil && s.cluster.onlineElsewhere(uid) {
				continue
			}
			p.Status = Offline
			if err := s.store.SavePresence(context.Background(), uid, p); err != nil {
				s.log.Warn("store presence at shutdown", "user", uid, "err", err)
			}
		}
	}
	s.cancel()
	s.wg.Wait()
	s.expireMailboxes(true)
}

// Drain ends every open stream (Next returns ErrDraining) and answers
// held long polls at once, so a shutting-down server does not wait for
// connections that would never end by themselves. Clients reconnect, to
// another node if discovery says so, and resume by cursor.
func (s *Service) Drain() { s.drainOnce.Do(func() { close(s.draining) }) }

// Observer is what the service reports to (transports report through it
// too, so every figure has one way out).
func (s *Service) Observer() Observer { return s.obs }

// Config returns the service configuration.
func (s *Service) Config() Config { return s.cfg }

// Presence exposes the engine to transports, which report connections.
func (s *Service) Presence() *PresenceEngine { return s.presence }

// Bus exposes the live-event bus to transports.
func (s *Service) Bus() Bus { return s.bus }

func (s *Service) sweepLoop(ctx context.Context) {
	every := max(s.cfg.OfflineAfter/10, 10*time.Millisecond)
	t := time.NewTicker(min(every, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.presence.Sweep()
			s.expireMailboxes(false)
		}
	}
}

// presenceLoop stores status changes and publishes them to mutual friends,
// one channel per friendship as the design prescribes. Changes waiting
// together are coalesced per user and stored concurrently, so they share
// the store's group commit. On a cluster every node sees every change
// (see clusterPresence) and tells only the friends connected to it.
func (s *Service) presenceLoop(ctx context.Context) {
	changes, publish := s.presence.changes, s.bus.Publish
	if s.cluster != nil {
		changes, publish = s.cluster.changes, s.cluster.bus.PublishLocal
	}
	for {
		var first PresenceChange
		select {
		case <-ctx.Done():
			return
		case first = <-changes:
		}
		s.obs.PresenceChanged(first.Presence.Status == Online)
		latest := map[ID]PresenceChange{first.UserID: first}
		order := []ID{first.UserID}
	drain:
		for len(order) < 1024 {
			select {
			case c := <-changes:
				s.obs.PresenceChanged(c.Presence.Status == Online)
				if _, seen := latest[c.UserID]; !seen {
					order = append(order, c.UserID)
				}
				c.store = c.store || latest[c.UserID].store
				latest[c.UserID] = c
			default:
				break drain
			}
		}
		var wg sync.WaitGroup
		for _, uid := range order {
			wg.Add(1)
			go func(uid ID, c PresenceChange) {
				defer wg.Done()
				if c.store {
					if err := s.store.SavePresence(ctx, uid, c.Presence); err != nil {
						if ctx.Err() == nil {
							s.log.Error("store presence", "user", uid, "err", err)
						}
					} else {
						s.view.Stored(uid, c.Presence)
					}
				}
				friends, _, _, err := s.store.FriendEdges(ctx, uid)
				if err != nil {
					return
				}
				ev := PresenceEvent(uid, c.Presence)
				for _, f := range friends {
					publish(f, ev)
				}
			}(uid, latest[uid])
		}
		wg.Wait()
	}
}

// ---- accounts ----

// Session is what an authenticated request acts as.
type Session struct {
	UserID   ID
	DeviceID ID
}

// SignupInput is the body of POST /v1/auth/signup.
type SignupInput struct {
	Username    string `json:"username"`
	Password    string `json:"password"`
	DisplayName string `json:"display_name"`
	Device      string `json:"device"`
}

// Auth is the answer to signup and login. Cursor is the user's inbox head
// at login: a new device that shows history through the conversation
// endpoints can start syncing there instead of replaying the whole inbox.
type Auth struct {
	User     User   `json:"user"`
	Token    string `json:"token"`
	DeviceID ID     `json:"device_id"`
	Cursor   uint64 `json:"cursor"`
}

func (s *Service) newDevice(uid ID, name string) (Device, string, []byte, error) {
	if name == "" {
		name = "device"
	}
	name, err := CleanName(name, "device", MaxDeviceName)
	if err != nil {
		return Device{}, "", nil, err
	}
	token, hash, err := NewToken()
	if err != nil {
		return Device{}, "", nil, err
	}
	return Device{ID: s.ids.Next(), UserID: uid, Name: name, CreatedAt: Now()}, token, hash, nil
}

// Signup creates an account and logs its first device in.
func (s *Service) Signup(ctx context.Context, in SignupInput) (Auth, error) {
	// Counted before any work: a refused signup costs no password hash.
	if wait := s.limits.signupAddr.take(s.limits.byAddr(ClientAddr(ctx))); wait > 0 {
		return Auth{}, s.refuse("signup_address", wait)
	}
	if err := ValidUsername(in.Username); err != nil {
		return Auth{}, err
	}
	if err := ValidPassword(in.Password); err != nil {
		return Auth{}, err
	}
	if in.DisplayName == "" {
		in.DisplayName = in.Username
	}
	name, err := CleanName(in.DisplayName, "display_name", MaxDisplayName)
	if err != nil {
		return Auth{}, err
	}
	u := User{ID: s.ids.Next(), Username: in.Username, DisplayName: name, CreatedAt: Now()}
	d, token, th, err := s.newDevice(u.ID, in.Device)
	if err != nil {
		return Auth{}, err
	}
	hash, err := HashPassword(in.Password)
	if err != nil {
		return Auth{}, err
	}
	if err := s.store.CreateUser(ctx, UserRecord{User: u, PasswordHash: hash}, d, th); err != nil {
		return Auth{}, err
	}
	s.presence.Touch(u.ID, d.ID)
	return Auth{User: u, Token: token, DeviceID: d.ID}, nil
}

// LoginInput is the body of POST /v1/auth/login.
type LoginInput struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Device   string `json:"device"`
}

// Login checks credentials and creates a new device with its own token.
// Failed logins are limited per account and per address; a throttled
// attempt is refused before the store is read or a password hashed, and
// unknown usernames count like known ones (no existence oracle).
func (s *Service) Login(ctx context.Context, in LoginInput) (Auth, error) {
	// Every attempt takes a token of its account and its address first,
	// and gets it back if the password was right: only failures count.
	account, addr := strings.ToLower(strings.TrimSpace(in.Username)), s.limits.byAddr(ClientAddr(ctx))
	if wait := s.limits.loginAccount.take(account); wait > 0 {
		return Auth{}, s.refuse("login_account", wait)
	}
	if wait := s.limits.loginAddr.take(addr); wait > 0 {
		s.limits.loginAccount.refund(account)
		return Auth{}, s.refuse("login_address", wait)
	}
	succeeded := false
	defer func() {
		if succeeded {
			s.limits.loginAccount.refund(account)
			s.limits.loginAddr.refund(addr)
		}
	}()
	rec, err := s.store.UserByName(ctx, in.Username)
	if errors.Is(err, ErrUserNotFound) {
		_, _ = CheckPassword(dummyHash, in.Password)
		return Auth{}, ErrBadCredentials
	}
	if err != nil {
		return Auth{}, err
	}
	ok, err := CheckPassword(rec.PasswordHash, in.Password)
	if err != nil {
		return Auth{}, err
	}
	if !ok {
		return Auth{}, ErrBadCredentials
	}
	succeeded = true
	d, token, th, err := s.newDevice(rec.ID, in.Device)
	if err != nil {
		return Auth{}, err
	}
	if err := s.store.CreateDevice(ctx, d, th); err != nil {
		return Auth{}, err
	}
	head, err := s.store.InboxHead(ctx, rec.ID)
	if err != nil {
		return Auth{}, err
	}
	s.presence.Touch(rec.ID, d.ID)
	return Auth{User: rec.User, Token: token, DeviceID: d.ID, Cursor: head}, nil
}

// Authenticate resolves a bearer token and counts the request as activity
// of its device.
func (s *Service) Authenticate(ctx context.Context, token string) (Session, error) {
	if token == "" {
		return Session{}, ErrUnauthorized
	}
	hash := TokenHash(token)
	d, ok := Device{}, false
	if s.tokens != nil {
		d, ok = s.tokens.get(hash)
	}
	if !ok {
		var err error
		if d, err = s.store.DeviceByToken(ctx, hash); err != nil {
			return Session{}, err
		}
		if s.tokens != nil {
			s.tokens.put(hash, d)
		}
	}
	s.presence.Touch(d.UserID, d.ID)
	return Session{UserID: d.UserID, DeviceID: d.ID}, nil
}

// Logout revokes the device's token; the user goes offline at once if it was
// their last active device.
func (s *Service) Logout(ctx context.Context, se Session) error {
	if _, err := s.store.DeleteDevice(ctx, se.UserID, se.DeviceID); err != nil {
		return err
	}
	if s.tokens != nil {
		s.tokens.revoke(se.DeviceID)
		s.cluster.revoke(se.DeviceID)
	}
	// Streams of the device end now, not when their token is next checked
	// (a stream checks it only when it opens).
	s.bus.Publish(se.UserID, revokeEvent(se.DeviceID))
	s.presence.Forget(se.UserID, se.DeviceID)
	return nil
}

// Heartbeat counts as activity; Authenticate already recorded it.
func (s *Service) Heartbeat(se Session) { s.presence.Touch(se.UserID, se.DeviceID) }

// User returns a profile.
func (s *Service) User(ctx context.Context, id ID) (User, error) { return s.store.UserByID(ctx, id) }

// UpdateMe changes the caller's display name.
func (s *Service) UpdateMe(ctx context.Context, se Session, displayName string) (User, error) {
	name, err := CleanName(displayName, "display_name", MaxDisplayName)
	if err != nil {
		return User{}, err
	}
	return s.store.UpdateDisplayName(ctx, se.UserID, name)
}

// SearchUsers finds users by username or display-name prefix.
func (s *Service) SearchUsers(ctx context.Context, q string, limit int) ([]User, error) {
	q = strings.TrimSpace(q)
	if q == "" {
		return nil, invalid("invalid_query", "q must not be empty")
	}
	return s.store.SearchUsers(ctx, q, clampLimit(limit, 20, 100))
}

func clampLimit(n, def, max int) int {
	if n <= 0 {
		return def
	}
	return min(n, max)
}

// ---- friends ----

// presenceOf returns live presence for online users and the stored one for
// the others.
func (s *Service) presenceOf(ctx context.Context, ids []ID) (map[ID]Presence, error) {
	stored, err := s.store.Presences(ctx, ids)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if p, ok := s.view.Snapshot(id); ok {
			stored[id] = p
		} else if p := stored[id]; p.Status == Online {
			// Stored as online by a node that died: nobody is active now.
			p.Status = Offline
			stored[id] = p
		}
	}
	return stored, nil
}

// AddFriend records the caller's side; the friendship exists once both
// sides have added each other. It returns "friends" or "requested".
func (s *Service) AddFriend(ctx context.Context, se Session, other ID) (string, error) {
	if other == se.UserID {
		return "", invalid("cannot_friend_self", "you cannot add yourself as a friend")
	}
	mutual, err := s.store.SetFriend(ctx, se.UserID, other, true)
	if err != nil {
		return "", err
	}
	if !mutual {
		return "requested", nil
	}
	// A new friendship: each side learns the other's presence at once.
	ps, err := s.presenceOf(ctx, []ID{se.UserID, other})
	if err == nil {
		s.bus.Publish(other, PresenceEvent(se.UserID, ps[se.UserID]))
		s.bus.Publish(se.UserID, PresenceEvent(other, ps[other]))
	}
	return "friends", nil
}

// RemoveFriend ends a friendship or withdraws/declines a request.
func (s *Service) RemoveFriend(ctx context.Context, se Session, other ID) error {
	_, err := s.store.SetFriend(ctx, se.UserID, other, false)
	return err
}

// Friends lists mutual friends with presence and pending requests.
func (s *Service) Friends(ctx context.Context, se Session) (FriendList, error) {
	mutual, in, out, err := s.store.FriendEdges(ctx, se.UserID)
	if err != nil {
		return FriendList{}, err
	}
	all := append(append(append([]ID{}, mutual...), in...), out...)
	users, err := s.store.UsersByID(ctx, all)
	if err != nil {
		return FriendList{}, err
	}
	ps, err := s.presenceOf(ctx, mutual)
	if err != nil {
		return FriendList{}, err
	}
	fl := FriendList{Friends: []Friend{}, Incoming: []User{}, Outgoing: []User{}}
	for _, id := range mutual {
		fl.Friends = append(fl.Friends, Friend{User: users[id], Presence: ps[id]})
	}
	for _, id := range in {
		fl.Incoming = append(fl.Incoming, users[id])
	}
	for _, id := range out {
		fl.Outgoing = append(fl.Outgoing, users[id])
	}
	return fl, nil
}

// ---- groups ----

// CreateGroupInput is the body of POST /v1/groups.
type CreateGroupInput struct {
	Name    string `json:"name"`
	Members []ID   `json:"members"`
}

// CreateGroup creates a group owned by the caller with the given members.
func (s *Service) CreateGroup(ctx context.Context, se Session, in CreateGroupInput) (GroupDetail, error) {
	name, err := CleanName(in.Name, "name", MaxGroupName)
	if err != nil {
		return GroupDetail{}, err
	}
	members := []ID{se.UserID}
	seen := map[ID]bool{se.UserID: true}
	for _, m := range in.Members {
		if !seen[m] {
			seen[m] = true
			members = append(members, m)
		}
	}
	if len(members) > MaxGroupMembers {
		return GroupDetail{}, ErrGroupFull
	}
	g := Group{ID: s.ids.Next(), Name: name, OwnerID: se.UserID, Members: members, CreatedAt: Now()}
	if err := s.store.CreateGroup(ctx, g); err != nil {
		return GroupDetail{}, err
	}
	return s.detail(ctx, g)
}

func (s *Service) detail(ctx context.Context, g Group) (GroupDetail, error) {
	users, err := s.store.UsersByID(ctx, g.Members)
	if err != nil {
		return GroupDetail{}, err
	}
	ps, err := s.presenceOf(ctx, g.Members)
	if err != nil {
		return GroupDetail{}, err
	}
	d := GroupDetail{Group: g, ConversationID: GroupConv(g.ID), Members: make([]Member, 0, len(g.Members))}
	for _, id := range g.Members {
		d.Members = append(d.Members, Member{User: users[id], Presence: ps[id]})
	}
	return d, nil
}

// GroupDetail returns a group with its members' presence snapshot; only
// members may read it (others get ErrGroupNotFound and learn nothing).
func (s *Service) GroupDetail(ctx context.Context, se Session, gid ID) (GroupDetail, error) {
	g, err := s.store.Group(ctx, gid)
	if err != nil {
		return GroupDetail{}, err
	}
	if !g.Has(se.UserID) {
		return GroupDetail{}, ErrGroupNotFound
	}
	return s.detail(ctx, g)
}

// Groups lists the caller's groups (without presence).
func (s *Service) Groups(ctx context.Context, se Session) ([]Group, error) {
	gs, err := s.store.GroupsOf(ctx, se.UserID)
	if gs == nil {
		gs = []Group{}
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i].ID > gs[j].ID })
	return gs, err
}

// AddMember adds uid to a group the caller belongs to.
func (s *Service) AddMember(ctx context.Context, se Session, gid, uid ID) (GroupDetail, error) {
	g, err := s.store.AddMember(ctx, gid, se.UserID, uid)
	if err != nil {
		return GroupDetail{}, err
	}
	return s.detail(ctx, g)
}

// RemoveMember removes uid (the caller itself, or anyone if the caller owns
// the group).
func (s *Service) RemoveMember(ctx context.Context, se Session, gid, uid ID) error {
	_, err := s.store.RemoveMember(ctx, gid, se.UserID, uid)
	return err
}

// ---- messages ----

// SendInput is the body of POST /v1/messages and of a WebSocket send frame.
type SendInput struct {
	To          *ID    `json:"to"`
	GroupID     *ID    `json:"group_id"`
	Content     string `json:"content"`
	ClientMsgID string `json:"client_msg_id"`
}

// Send validates and durably stores a message, then hands it to the live
// bus for connected devices; users with no connected device get a push
// through the durable outbox.
func (s *Service) Send(ctx context.Context, se Session, in SendInput) (res SendResult, err error) {
	defer func(start time.Time) {
		result := "ok"
		if err != nil {
			result = AsError(err).Code
		}
		s.obs.Sent(result, time.Since(start))
	}(time.Now())
	if (in.To == nil) == (in.GroupID == nil) {
		return SendResult{}, invalid("invalid_recipient", "give exactly one of to and group_id")
	}
	if err := ValidContent(in.Content); err != nil {
		return SendResult{}, err
	}
	if err := ValidClientMsgID(in.ClientMsgID); err != nil {
		return SendResult{}, err
	}
	if wait := s.limits.sendUser.take(se.UserID.String()); wait > 0 {
		return SendResult{}, s.refuse("send", wait)
	}
	req := SendRequest{
		From: se.UserID, Content: in.Content, ClientMsgID: in.ClientMsgID, CreatedAt: Now(),
		NeedsPush: func(uid ID) bool { return !s.view.Online(uid) },
	}
	if in.To != nil {
		req.To = *in.To
	} else {
		req.GroupID = *in.GroupID
	}
	s.mentions(ctx, &req)
	res, err = s.store.Append(ctx, req)
	if err != nil {
		return res, err
	}
	for _, d := range res.Deliveries {
		s.bus.Publish(d.UserID, MessageEvent(d.Seq, res.Raw))
	}
	if res.Pushes > 0 {
		s.pusher.poke()
	}
	return res, nil
}

// Page is one page of a user's inbox for the resume path.
type Page struct {
	Events  []Event
	Cursor  uint64
	HasMore bool
}

// Sync limits: a page holds at most this many events or bytes of messages.
const (
	MaxSyncEvents = 500
	MaxSyncBytes  = 1 << 20
)

// Sync returns the durable events of the caller's inbox after cursor, in
// seq order. This is the one resume path every transport reads from.
func (s *Service) Sync(ctx context.Context, se Session, cursor uint64, limit int) (Page, error) {
	limit = clampLimit(limit, 100, MaxSyncEvents)
	entries, err := s.store.Inbox(ctx, se.UserID, cursor, limit+1, MaxSyncBytes)
	if err != nil {
		return Page{}, err
	}
	p := Page{Cursor: cursor, Events: make([]Event, 0, len(entries))}
	if len(entries) > limit {
		entries, p.HasMore = entries[:limit], true
	}
	size := 0
	for _, e := range entries {
		p.Events = append(p.Events, MessageEvent(e.Seq, e.Message))
		p.Cursor = e.Seq
		size += len(e.Message)
	}
	// A short page under the byte cap is the end of the inbox: the store
	// stops early only once the cap is reached. Otherwise ask the head:
	// the byte cap may have cut the page short, and a cursor beyond the
	// head (a client bug, or a server restored from an old backup) is
	// pulled back to it, or the client would miss every message until the
	// inbox grew past its cursor. (Skipping it halves the store reads of a
	// stream filling a gap, which a cluster pays a round trip for.)
	if !p.HasMore && (len(entries) == 0 || size >= MaxSyncBytes) {
		head, err := s.store.InboxHead(ctx, se.UserID)
		if err != nil {
			return Page{}, err
		}
		p.HasMore = head > p.Cursor
		if p.Cursor > head {
			p.Cursor = head
		}
	}
	return p, nil
}

// Conversations lists the caller's conversations, newest first.
func (s *Service) Conversations(ctx context.Context, se Session, limit int) ([]Conversation, error) {
	cs, err := s.store.Conversations(ctx, se.UserID, clampLimit(limit, 100, 500))
	if cs == nil {
		cs = []Conversation{}
	}
	return cs, err
}

// History pages through a conversation newest first; hasMore says whether
// older (or, with only after set, further) messages remain.
func (s *Service) History(ctx context.Context, se Session, conv string, before, after ID, limit int) (msgs []json.RawMessage, hasMore bool, err error) {
	if _, ok := ParseConv(conv); !ok {
		return nil, false, ErrConvNotFound
	}
	limit = clampLimit(limit, DefaultPageLimit, MaxPageLimit)
	msgs, err = s.store.History(ctx, se.UserID, conv, before, after, limit+1)
	if err != nil {
		return nil, false, err
	}
	msgs, hasMore = capPage(msgs, limit)
	return msgs, hasMore, nil
}

// MarkRead moves the caller's read marker in conv forward to msg.
func (s *Service) MarkRead(ctx context.Context, se Session, conv string, msg ID) error {
	if _, ok := ParseConv(conv); !ok {
		return ErrConvNotFound
	}
	return s.store.MarkRead(ctx, se.UserID, conv, msg)
}

// ErrNotReady is what Ready reports for a node that has lost its store or
// its bus.
var ErrNotReady = Errorf(KindUnavailable, "not_ready", "the node cannot serve now")

// Ready reports whether the node should be given clients: it is not
// draining, its store answers (a store that can be unreachable has a Ping
// method) and, on a cluster, its bus is connected (a Connected method).
// Consul's health check and load balancers ask it through /readyz.
func (s *Service) Ready(ctx context.Context) error {
	select {
	case <-s.draining:
		return ErrDraining
	default:
	}
	if p, ok := s.store.(interface{ Ping(context.Context) error }); ok {
		if err := p.Ping(ctx); err != nil {
			return Errorf(KindUnavailable, "store_unreachable", "the store does not answer: %v", err)
		}
	}
	if b, ok := s.bus.(interface{ Connected() bool }); ok && !b.Connected() {
		return Errorf(KindUnavailable, "bus_unreachable", "the cluster bus is not connected")
	}
	return nil
}
