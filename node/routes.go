package node

import (
	"sort"

	"github.com/labstack/echo/v4"
)

// Routes lists every route the node's HTTP router knows, as "METHOD PATH"
// with the path as echo registers it ("GET /v1/groups/:id"), sorted and
// without duplicates. The authorisation tests check that each route has a
// row, so a new route cannot ship without one.
//
// It reads the router through the server's handler (the gateway). If that
// handler is ever wrapped, Routes returns nil, and the tests say so: keep
// a pointer to the gateway in Node then.
func (n *Node) Routes() []string {
	h, ok := n.srv.Handler.(interface{ Echo() *echo.Echo })
	if !ok {
		return nil
	}
	e := h.Echo()
	seen := map[string]bool{}
	add := func(rs []*echo.Route) {
		for _, r := range rs {
			seen[r.Method+" "+r.Path] = true
		}
	}
	add(e.Routes())
	for _, r := range e.Routers() { // host-specific routers, if any
		add(r.Routes())
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
