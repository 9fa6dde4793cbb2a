package core

import (
	"errors"
	"fmt"
	"time"
)

// Kind classifies an error for the edge that reports it; the HTTP gateway
// maps each kind to one status code.
type Kind int

// The kinds of error the core reports.
const (
	KindInternal     Kind = iota // a bug or a failed dependency
	KindInvalid                  // the request is malformed or breaks a rule
	KindUnauthorized             // no valid credentials
	KindForbidden                // authenticated but not allowed
	KindNotFound                 // no such thing, or the caller may not know it exists
	KindConflict                 // the state of the system refuses the change
	KindTooLarge                 // a request body above the cap
	KindUnavailable              // shutting down or overloaded; retry later
	KindRateLimited              // too many requests; retry after Error.RetryAfter
)

// Error is a domain error with a stable snake_case code that clients may
// switch on and a human message that they should only show.
type Error struct {
	Kind    Kind
	Code    string
	Message string
	// RetryAfter, when set, is how long the client should wait (a
	// rate-limited request).
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf builds an *Error.
func Errorf(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// AsError returns the *Error inside err, or an internal error wrapping it.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Kind: KindInternal, Code: "internal_error", Message: "internal error"}
}

// Errors shared by the core and the store adapters, which must return these
// exact values (possibly wrapped) so every store behaves alike.
var (
	ErrUnauthorized     = Errorf(KindUnauthorized, "unauthorized", "missing, invalid or revoked token")
	ErrBadCredentials   = Errorf(KindUnauthorized, "invalid_credentials", "wrong username or password")
	ErrUsernameTaken    = Errorf(KindConflict, "username_taken", "that username is already in use")
	ErrUserNotFound     = Errorf(KindNotFound, "user_not_found", "no such user")
	ErrGroupNotFound    = Errorf(KindNotFound, "group_not_found", "no such group, or you are not a member")
	ErrGroupFull        = Errorf(KindConflict, "group_full", "a group holds at most %d members including its owner", MaxGroupMembers)
	ErrAlreadyMember    = Errorf(KindConflict, "already_member", "that user is already a member of the group")
	ErrNotMember        = Errorf(KindNotFound, "member_not_found", "that user is not a member of the group")
	ErrForbidden        = Errorf(KindForbidden, "forbidden", "only the group owner may remove other members")
	ErrConvNotFound     = Errorf(KindNotFound, "conversation_not_found", "no such conversation, or you are not a member")
	ErrMessageNotFound  = Errorf(KindNotFound, "message_not_found", "no such message in this conversation")
	ErrClientMsgIDReuse = Errorf(KindConflict, "client_msg_id_conflict", "client_msg_id was already used for a different message")
	ErrUnavailable      = Errorf(KindUnavailable, "unavailable", "the server is shutting down or its store has failed; retry")
)
