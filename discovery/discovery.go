// Package discovery recommends the chat server a client should connect to.
package discovery

import (
	"context"
	"net/http"
)

// Server is a chat server a client can be sent to.
type Server struct {
	ID  string `json:"id"`
	URL string `json:"url"` // base URL, e.g. http://10.0.0.5:8080
}

// Discovery picks the best server for the client making r (by location,
// load and health, as an implementation sees fit).
type Discovery interface {
	Recommend(ctx context.Context, r *http.Request) (Server, error)
}

// Static is the single-node discovery: it always recommends this node.
// With an empty URL it answers with the address the client used to reach
// it, which is right behind any port mapping.
type Static struct {
	ID  string
	URL string
}

var _ Discovery = Static{}

// Recommend implements Discovery.
func (s Static) Recommend(_ context.Context, r *http.Request) (Server, error) {
	if s.URL != "" {
		return Server{ID: s.ID, URL: s.URL}, nil
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
		scheme = p
	}
	return Server{ID: s.ID, URL: scheme + "://" + r.Host}, nil
}
