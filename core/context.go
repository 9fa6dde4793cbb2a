package core

import "context"

type sessionKey struct{}

// WithSession returns a context carrying the authenticated session.
func WithSession(ctx context.Context, se Session) context.Context {
	return context.WithValue(ctx, sessionKey{}, se)
}

// SessionFrom returns the session the gateway authenticated.
func SessionFrom(ctx context.Context) (Session, bool) {
	se, ok := ctx.Value(sessionKey{}).(Session)
	return se, ok
}
