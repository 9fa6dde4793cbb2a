package core

import (
	"encoding/json"
	"time"
)

// Limits of protocol v1. They are written once here and reported by
// GET /v1/negotiate, so clients never hard-code them.
const (
	MaxMessageChars  = 100_000 // Unicode code points
	MaxGroupMembers  = 100     // including the owner
	MaxClientMsgID   = 128     // bytes
	MaxUsername      = 32
	MinUsername      = 3
	MaxDisplayName   = 64
	MinPassword      = 8
	MaxPassword      = 256
	MaxGroupName     = 100
	MaxDeviceName    = 64
	DefaultPageLimit = 50
	MaxPageLimit     = 200
)

// TimeFormat is RFC 3339 with milliseconds, always UTC.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// Time is a timestamp that marshals as TimeFormat in UTC.
type Time struct{ time.Time }

// MarshalJSON implements json.Marshaler.
func (t Time) MarshalJSON() ([]byte, error) {
	return t.appendJSON(make([]byte, 0, len(TimeFormat)+2)), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (t *Time) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		t.Time = time.Time{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return err
	}
	t.Time = v
	return nil
}

// Now returns the current time truncated to milliseconds, the precision that
// travels on the wire, so a value read back equals the value stored.
func Now() Time { return Time{time.Now().UTC().Truncate(time.Millisecond)} }

// User is a public profile.
type User struct {
	ID          ID     `json:"id"`
	Username    string `json:"username"`
	DisplayName string `json:"display_name"`
	CreatedAt   Time   `json:"created_at"`
}

// Device is one login of a user; its token authenticates requests.
type Device struct {
	ID        ID     `json:"id"`
	UserID    ID     `json:"user_id"`
	Name      string `json:"name"`
	CreatedAt Time   `json:"created_at"`
}

// Presence statuses.
const (
	Online  = "online"
	Offline = "offline"
)

// Presence is a user's status as friends and group members see it.
type Presence struct {
	Status       string `json:"status"`
	LastActiveAt Time   `json:"last_active_at"`
}

// Friend is a mutual friend with their presence.
type Friend struct {
	User
	Presence
}

// FriendList is what GET /v1/friends returns: mutual friends with presence,
// and the one-sided requests in both directions (without presence).
type FriendList struct {
	Friends  []Friend `json:"friends"`
	Incoming []User   `json:"incoming"`
	Outgoing []User   `json:"outgoing"`
}

// Group is a chat group of at most MaxGroupMembers members.
type Group struct {
	ID        ID     `json:"id"`
	Name      string `json:"name"`
	OwnerID   ID     `json:"owner_id"`
	Members   []ID   `json:"-"`
	CreatedAt Time   `json:"created_at"`
}

// Has reports whether uid is a member.
func (g Group) Has(uid ID) bool {
	for _, m := range g.Members {
		if m == uid {
			return true
		}
	}
	return false
}

// Member is a group member as group detail shows it, with a presence
// snapshot read when the group is opened.
type Member struct {
	User
	Presence
}

// GroupDetail is what GET /v1/groups/{id} returns.
type GroupDetail struct {
	Group
	ConversationID string   `json:"conversation_id"`
	Members        []Member `json:"members"`
}

// Message is a stored chat message. To is set for 1:1 messages, GroupID for
// group messages.
type Message struct {
	ID             ID     `json:"id"`
	ConversationID string `json:"conversation_id"`
	From           ID     `json:"from"`
	To             ID     `json:"to,omitempty"`
	GroupID        ID     `json:"group_id,omitempty"`
	Content        string `json:"content"`
	CreatedAt      Time   `json:"created_at"`
	ClientMsgID    string `json:"client_msg_id"`
	Mentions       []ID   `json:"mentions,omitempty"`
}

// Mentioned reports whether the message mentions uid.
func (m *Message) Mentioned(uid ID) bool {
	for _, id := range m.Mentions {
		if id == uid {
			return true
		}
	}
	return false
}

// Conversation is one entry of GET /v1/conversations.
type Conversation struct {
	ID          string          `json:"id"`
	Kind        string          `json:"kind"` // "direct" or "group"
	PeerID      ID              `json:"peer_id,omitempty"`
	GroupID     ID              `json:"group_id,omitempty"`
	LastMessage json.RawMessage `json:"last_message"`
	ReadUpTo    ID              `json:"read_up_to,omitempty"`
	Unread      int             `json:"unread_count"`
	lastID      ID
}

// SetLastID records the id of the newest message for sorting.
func (c *Conversation) SetLastID(id ID) { c.lastID = id }

// LastID is the id of the newest message, for sorting newest first.
func (c *Conversation) LastID() ID { return c.lastID }
