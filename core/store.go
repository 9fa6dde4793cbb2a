package core

import (
	"context"
	"encoding/json"
)

// Store is the durable state of chatgate. Every method is safe for
// concurrent use. A method that changes state returns only once the change is
// durable (fsynced or committed), and either applies all of its change or
// none of it. Adapters return the Err* values of this package for the
// conditions they name; core/storetest checks that they do.
type Store interface {
	Users
	Social
	Messages
	Finder
	PushOutbox
	Close() error
}

// UserRecord is a user as stored, with the password hash the API never shows.
type UserRecord struct {
	User
	PasswordHash []byte `json:"password_hash"`
}

// Users holds accounts and device tokens.
type Users interface {
	// CreateUser stores a new user and its first device; ErrUsernameTaken if
	// the (case-folded) username exists.
	CreateUser(ctx context.Context, u UserRecord, d Device, tokenHash []byte) error
	UserByID(ctx context.Context, id ID) (User, error)
	UsersByID(ctx context.Context, ids []ID) (map[ID]User, error)
	UserByName(ctx context.Context, username string) (UserRecord, error)
	// SearchUsers returns up to limit users whose username or display name
	// starts with prefix (case-insensitive).
	SearchUsers(ctx context.Context, prefix string, limit int) ([]User, error)
	UpdateDisplayName(ctx context.Context, id ID, name string) (User, error)
	CreateDevice(ctx context.Context, d Device, tokenHash []byte) error
	// DeviceByToken returns the device of a token hash, ErrUnauthorized if
	// none (never stored, or revoked).
	DeviceByToken(ctx context.Context, tokenHash []byte) (Device, error)
	// DeleteDevice revokes the device's token and reports how many devices
	// the user still has.
	DeleteDevice(ctx context.Context, userID, deviceID ID) (remaining int, err error)
}

// Social holds friendships, groups and stored presence.
type Social interface {
	// SetFriend records (on) or removes (off) from's side of a friendship;
	// removing also removes the other side. It reports whether the two are
	// mutual friends afterwards. ErrUserNotFound if to does not exist.
	SetFriend(ctx context.Context, from, to ID, on bool) (mutual bool, err error)
	// FriendEdges returns mutual friends and one-sided requests.
	FriendEdges(ctx context.Context, uid ID) (mutual, incoming, outgoing []ID, err error)
	// CreateGroup stores a group whose members (owner included) all exist;
	// ErrUserNotFound otherwise.
	CreateGroup(ctx context.Context, g Group) error
	Group(ctx context.Context, id ID) (Group, error)
	GroupsOf(ctx context.Context, uid ID) ([]Group, error)
	// AddMember adds uid on behalf of member by: ErrGroupNotFound if by is
	// not a member, ErrUserNotFound, ErrAlreadyMember, ErrGroupFull.
	AddMember(ctx context.Context, gid, by, uid ID) (Group, error)
	// RemoveMember removes uid on behalf of by: a member may remove itself,
	// the owner anyone (ErrForbidden otherwise; ErrGroupNotFound if by is
	// not a member). When the owner leaves, the
	// longest-standing member becomes owner; the last member leaving deletes
	// nothing but leaves an empty group nobody can act on.
	RemoveMember(ctx context.Context, gid, by, uid ID) (Group, error)
	SavePresence(ctx context.Context, uid ID, p Presence) error
	Presences(ctx context.Context, ids []ID) (map[ID]Presence, error)
}

// SendRequest asks the store to append one message.
type SendRequest struct {
	From        ID
	To          ID // 1:1 recipient, or 0
	GroupID     ID // group, or 0
	Content     string
	ClientMsgID string
	CreatedAt   Time
	// Mentions are the members the content mentions (@username), found by
	// the core; the store keeps them on the message and lists the message
	// under each of them.
	Mentions []ID
	// NeedsPush reports whether a recipient has no connected device; the
	// store writes a push-outbox entry for each such recipient in the same
	// transaction as the message, so a crash never drops a notification.
	NeedsPush func(ID) bool
}

// Delivery is one inbox entry the append created.
type Delivery struct {
	UserID ID
	Seq    uint64
}

// SendResult is the outcome of an append.
type SendResult struct {
	Message Message
	// Raw is Message encoded as JSON once, shared by every event built from it.
	Raw        json.RawMessage
	Deliveries []Delivery
	// Replayed is true when ClientMsgID matched an earlier message, which is
	// returned instead of storing a duplicate; Deliveries is then empty.
	Replayed bool
	// Pushes is how many push-outbox entries the append wrote.
	Pushes int
}

// InboxEntry is one durable event of a user's inbox.
type InboxEntry struct {
	Seq     uint64
	Message json.RawMessage
}

// Messages holds messages, inboxes and read markers.
type Messages interface {
	// Append stores the message, one inbox entry per recipient (1:1: sender
	// and recipient; group: every member once) with each user's next seq,
	// and push-outbox entries, all in one durable transaction. It assigns the
	// message id. Seqs are strictly increasing and gap-free per user.
	// Errors: ErrUserNotFound, ErrGroupNotFound (also for non-members),
	// ErrClientMsgIDReuse.
	Append(ctx context.Context, req SendRequest) (SendResult, error)
	// Inbox returns up to limit entries with seq > after in order, stopping
	// early once maxBytes of message JSON are collected (at least one entry
	// is always returned if any exists).
	Inbox(ctx context.Context, uid ID, after uint64, limit, maxBytes int) ([]InboxEntry, error)
	// InboxHead returns the user's newest seq (0 for an empty inbox).
	InboxHead(ctx context.Context, uid ID) (uint64, error)
	// History returns messages of a conversation the caller belongs to, newest
	// first, with before < id and id > after (0 means unbounded).
	History(ctx context.Context, uid ID, conv string, before, after ID, limit int) ([]json.RawMessage, error)
	// Conversations lists the caller's conversations, newest activity first.
	Conversations(ctx context.Context, uid ID, limit int) ([]Conversation, error)
	// MarkRead moves the caller's read marker forward to msg, which must be a
	// message of conv. It never moves a marker backwards.
	MarkRead(ctx context.Context, uid ID, conv string, msg ID) error
}

// Push is a pending notification of the durable push outbox.
type Push struct {
	Key     string // opaque to callers
	UserID  ID
	Message json.RawMessage
}

// PushOutbox holds notifications for users with no connected device until a
// Notifier has accepted them.
type PushOutbox interface {
	// PendingPushes returns up to limit entries with Key > after, oldest
	// first ("" starts at the beginning).
	PendingPushes(ctx context.Context, after string, limit int) ([]Push, error)
	DeletePush(ctx context.Context, key string) error
}
