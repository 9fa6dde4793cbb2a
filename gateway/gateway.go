// Package gateway is chatgate's HTTP API (protocol v1) on echo: routing,
// authentication, strict JSON decoding and the one error shape. It turns
// requests into calls on the core and mounts the transports' endpoints.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/discovery"
	"github.com/chatgate/chatgate/transports"
	"github.com/chatgate/chatgate/wire"
)

// Gateway serves protocol v1.
type Gateway struct {
	svc        *core.Service
	disc       discovery.Discovery
	transports []transports.Endpoint
	log        *slog.Logger
	echo       *echo.Echo
	trusted    []netip.Prefix
}

// Options are the gateway's settings beyond its parts.
type Options struct {
	// TrustedProxies are the peers whose X-Forwarded-For names the client
	// (for rate limits by address); from any other peer the header is
	// ignored, since a client could send any address in it.
	TrustedProxies []netip.Prefix
	// Observe, if set, is told of every request once answered (metrics,
	// the access log).
	Observe func(Request)
}

// Request is what Observe is told of an answered request. It holds no
// path and no query: paths hold ids and queries may hold a token
// (access_token), and neither belongs in a metric label or a log.
type Request struct {
	Route     string // the route pattern, e.g. /v1/groups/:id; "other" for no route
	Method    string // "other" with no route: any string a client sends is not a label
	Status    int
	Bytes     int64
	Duration  time.Duration
	Transport bool   // a transport's connection: streams and held polls last as long as the client stays
	Client    string // the client's address (see -trusted-proxies)
}

// New builds the HTTP handler. Transports are listed by /v1/negotiate in the
// order given, which is the order clients should try them.
func New(svc *core.Service, disc discovery.Discovery, eps []transports.Endpoint, log *slog.Logger, o Options) *Gateway {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	g := &Gateway{svc: svc, disc: disc, transports: eps, log: log, echo: e, trusted: o.TrustedProxies}
	e.HTTPErrorHandler = errorHandler(log)
	if o.Observe != nil {
		e.Use(g.observe(eps, o.Observe))
	}
	e.Use(middleware.Recover())
	e.Use(apiHeaders)
	// Any origin may call the API: it authenticates with bearer tokens,
	// never cookies, so a foreign page cannot act with a user's rights.
	e.Use(middleware.CORSWithConfig(middleware.CORSConfig{
		AllowOrigins:  []string{"*"},
		AllowHeaders:  []string{"Authorization", "Content-Type", "Last-Event-ID"},
		ExposeHeaders: []string{"Idempotent-Replayed"},
		MaxAge:        86400,
	}))

	v1 := e.Group("/v1")
	v1.GET("/negotiate", g.negotiate)
	v1.POST("/auth/signup", g.signup)
	v1.POST("/auth/login", g.login)

	// Authentication is route middleware, not group middleware: echo's
	// Group.Use registers a catch-all that would answer 404 instead of 405
	// for a wrong method and ask unknown paths for a token.
	a := authed{v1, g.authenticate}
	a.POST("/auth/logout", g.logout)
	a.POST("/heartbeat", g.heartbeat)
	a.POST("/typing", g.typing)
	a.GET("/me", g.me)
	a.PATCH("/me", g.updateMe)
	a.GET("/users", g.searchUsers)
	a.GET("/users/:id", g.user)
	a.GET("/friends", g.friends)
	a.PUT("/friends/:id", g.addFriend)
	a.DELETE("/friends/:id", g.removeFriend)
	a.GET("/groups", g.groups)
	a.POST("/groups", g.createGroup)
	a.GET("/groups/:id", g.group)
	a.POST("/groups/:id/members", g.addMember)
	a.DELETE("/groups/:id/members/:uid", g.removeMember)
	a.POST("/messages", g.send)
	a.GET("/conversations", g.conversations)
	a.GET("/conversations/:id/messages", g.history)
	a.POST("/conversations/:id/read", g.markRead)
	a.GET("/search", g.search)
	a.GET("/mentions", g.mentions)
	for _, ep := range eps {
		a.GET(strings.TrimPrefix(ep.Path, "/v1"), g.mount(ep.Handler))
	}
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	e.GET("/readyz", g.readyz)
	return g
}

// apiHeaders marks every API answer as private and typed: answers hold
// tokens and messages, which no shared cache may keep, and a browser must
// never sniff JSON into something it would run.
func apiHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if strings.HasPrefix(c.Request().URL.Path, "/v1/") {
			h := c.Response().Header()
			h.Set("Cache-Control", "no-store")
			h.Set("X-Content-Type-Options", "nosniff")
		}
		return next(c)
	}
}

// observe reports each request to fn. It renders the error itself, as
// echo's request logger does, so the status is the one the client gets.
func (g *Gateway) observe(eps []transports.Endpoint, fn func(Request)) echo.MiddlewareFunc {
	e := g.echo
	var (
		once   sync.Once
		routes map[string]bool // registered patterns; read once all are in
	)
	streams := map[string]bool{}
	for _, ep := range eps {
		streams[ep.Path] = true
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			if err := next(c); err != nil {
				c.Error(err)
			}
			once.Do(func() {
				routes = map[string]bool{}
				for _, r := range e.Routes() {
					routes[r.Path] = true
				}
			})
			route := c.Path()
			if !routes[route] {
				route = "other"
			}
			method := c.Request().Method
			if route == "other" {
				method = "other"
			}
			fn(Request{Route: route, Method: method, Status: c.Response().Status, Bytes: c.Response().Size,
				Duration: time.Since(start), Transport: streams[route], Client: g.clientAddr(c.Request())})
			return nil
		}
	}
}

// authed registers routes that need a valid token.
type authed struct {
	g  *echo.Group
	mw echo.MiddlewareFunc
}

func (a authed) GET(p string, h echo.HandlerFunc)    { a.g.GET(p, h, a.mw) }
func (a authed) POST(p string, h echo.HandlerFunc)   { a.g.POST(p, h, a.mw) }
func (a authed) PUT(p string, h echo.HandlerFunc)    { a.g.PUT(p, h, a.mw) }
func (a authed) PATCH(p string, h echo.HandlerFunc)  { a.g.PATCH(p, h, a.mw) }
func (a authed) DELETE(p string, h echo.HandlerFunc) { a.g.DELETE(p, h, a.mw) }

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.echo.ServeHTTP(w, r) }

// Echo exposes the router so the node can mount more (the web client).
func (g *Gateway) Echo() *echo.Echo { return g.echo }

func (g *Gateway) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		se, err := g.svc.Authenticate(r.Context(), wire.Token(r))
		if err != nil {
			return err
		}
		c.SetRequest(r.WithContext(core.WithSession(r.Context(), se)))
		return next(c)
	}
}

func session(c echo.Context) core.Session {
	se, _ := core.SessionFrom(c.Request().Context())
	return se
}

func (g *Gateway) mount(h transports.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		return h(c.Response(), c.Request(), session(c))
	}
}

func pathID(c echo.Context, name string) (core.ID, error) {
	id, err := core.ParseID(c.Param(name))
	if err != nil {
		return 0, core.Errorf(core.KindInvalid, "invalid_id", "%s in the path must be a positive decimal id", name)
	}
	return id, nil
}

func queryID(c echo.Context, name string) (core.ID, error) {
	v := c.QueryParam(name)
	if v == "" {
		return 0, nil
	}
	id, err := core.ParseID(v)
	if err != nil {
		return 0, core.Errorf(core.KindInvalid, "invalid_"+name, "%s must be a positive decimal message id", name)
	}
	return id, nil
}

func queryLimit(c echo.Context) (int, error) {
	v := c.QueryParam("limit")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, core.Errorf(core.KindInvalid, "invalid_limit", "limit must be a positive integer")
	}
	return n, nil
}

// ---- handlers ----

// readyz answers 200 while the node serves and 503 (with the reason) while
// it drains or has lost its store or bus; Consul's check calls it.
func (g *Gateway) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if err := g.svc.Ready(ctx); err != nil {
		return err
	}
	return c.String(http.StatusOK, "ready\n")
}

func (g *Gateway) negotiate(c echo.Context) error {
	srv, err := g.disc.Recommend(c.Request().Context(), c.Request())
	if err != nil {
		return core.Errorf(core.KindUnavailable, "no_server", "no chat server is available: %v", err)
	}
	names := make([]string, len(g.transports))
	for i, t := range g.transports {
		names[i] = t.Name
	}
	cfg := g.svc.Config()
	return c.JSON(http.StatusOK, map[string]any{
		"server":                srv.URL,
		"server_id":             srv.ID,
		"transports":            names,
		"heartbeat_interval_ms": cfg.HeartbeatInterval.Milliseconds(),
		"offline_after_ms":      cfg.OfflineAfter.Milliseconds(),
		"max_message_chars":     core.MaxMessageChars,
		"max_group_members":     core.MaxGroupMembers,
		"max_body_bytes":        wire.MaxBodyBytes,
	})
}

// clientAddr is the client's IP: the peer's, or, when the peer is a
// trusted proxy, the nearest address in X-Forwarded-For that is not one of
// ours (addresses further left came from the client and prove nothing).
func (g *Gateway) clientAddr(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	addr := ap.Addr().Unmap()
	if !g.trustedPeer(addr) {
		return addr.String()
	}
	parts := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(parts) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(parts[i]))
		if err != nil {
			break
		}
		addr = a.Unmap()
		if !g.trustedPeer(addr) {
			break
		}
	}
	return addr.String()
}

func (g *Gateway) trustedPeer(a netip.Addr) bool {
	for _, p := range g.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// maxTarpit bounds how long a refused login or signup is held.
const maxTarpit = time.Second

// tarpit holds a rate-limited login or signup for its Retry-After (at most
// a second) before answering. A refusal costs the server almost nothing,
// but a guesser that ignores Retry-After would otherwise get tens of
// thousands a second and take a core from everyone else; held, each of its
// connections makes one attempt a second. What it holds is a goroutine per
// connection, which the limits per address bound.
func tarpit(c echo.Context, err error) error {
	var ce *core.Error
	if !errors.As(err, &ce) || ce.Code != "rate_limited" {
		return err
	}
	t := time.NewTimer(min(ce.RetryAfter, maxTarpit))
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.Request().Context().Done():
	}
	return err
}

func (g *Gateway) signup(c echo.Context) error {
	var in core.SignupInput
	if err := wire.DecodeRequest(c.Response(), c.Request(), &in); err != nil {
		return err
	}
	a, err := g.svc.Signup(core.WithClientAddr(c.Request().Context(), g.clientAddr(c.Request())), in)
	if err != nil {
		return tarpit(c, err)
	}
	return c.JSON(http.StatusCreated, a)
}

func (g *Gateway) login(c echo.Context) error {
	var in core.LoginInput
	if err := wire.DecodeRequest(c.Response(), c.Request(), &in); err != nil {
		return err
	}
	a, err := g.svc.Login(core.WithClientAddr(c.Request().Context(), g.clientAddr(c.Request())), in)
	if err != nil {
		return tarpit(c, err)
	}
	return c.JSON(http.StatusOK, a)
}

func (g *Gateway) logout(c echo.Context) error {
	if err := g.svc.Logout(c.Request().Context(), session(c)); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (g *Gateway) heartbeat(c echo.Context) error {
	g.svc.Heartbeat(session(c))
	return c.NoContent(http.StatusNoContent)
}

func (g *Gateway) typing(c echo.Context) error {
	var in struct {
		ConversationID string `json:"conversation_id"`
	}
	if err := wire.DecodeRequest(c.Response(), c.Request(), &in); err != nil {
		return err
	}
	if err := g.svc.Typing(c.Request().Context(), session(c), in.ConversationID); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (g *Gateway) me(c echo.Context) error {
	u, err := g.svc.User(c.Request().Context(), session(c).UserID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, u)
}

func (g *Gateway) updateMe(c echo.Context) error {
	var in struct {
		DisplayName *string `json:"display_name"`
	}
	if err := wire.DecodeRequest(c.Response(), c.Request(), &in); err != nil {
		return err
	}
	if in.DisplayName == nil {
		return core.Errorf(core.KindInvalid, "invalid_display_name", "display_name is required")
	}
	u, err := g.svc.UpdateMe(c.Request().Context(), session(c), *in.DisplayName)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, u)
}

func (g *Gateway) user(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	u, err := g.svc.User(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, u)
}

func (g *Gateway) searchUsers(c echo.Context) error {
	limit, err := queryLimit(c)
	if err != nil {
		return err
	}
	us, err := g.svc.SearchUsers(c.Request().Context(), c.QueryParam("q"), limit)
	if err != nil {
		return err
	}
	if us == nil {
		us = []core.User{}
	}
	return c.JSON(http.StatusOK, map[string]any{"users": us})
}

func (g *Gateway) friends(c echo.Context) error {
	fl, err := g.svc.Friends(c.Request().Context(), session(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, fl)
}

func (g *Gateway) addFriend(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	status, err := g.svc.AddFriend(c.Request().Context(), session(c), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"user_id": id, "status": status})
}

func (g *Gateway) removeFriend(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	if err := g.svc.RemoveFriend(c.Request().Context(), session(c), id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (g *Gateway) groups(c echo.Context) error {
	gs, err := g.svc.Groups(c.Request().Context(), session(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"groups": gs})
}

func (g *Gateway) createGroup(c echo.Context) error {
	var in core.CreateGroupInput
	if err := wire.DecodeRequest(c.Response(), c.Request(), &in); err != nil {
		return err
	}
	d, err := g.svc.CreateGroup(c.Request().Context(), session(c), in)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, d)
}

func (g *Gateway) group(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	d, err := g.svc.GroupDetail(c.Request().Context(), session(c), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

func (g *Gateway) addMember(c echo.Context) error {
	gid, err := pathID(c, "id")
	if err != nil {
		return err
	}
	var in struct {
		UserID *core.ID `json:"user_id"`
	}
	if err := wire.DecodeRequest(c.Response(), c.Request(), &in); err != nil {
		return err
	}
	if in.UserID == nil {
		return core.Errorf(core.KindInvalid, "invalid_field", "user_id is required")
	}
	d, err := g.svc.AddMember(c.Request().Context(), session(c), gid, *in.UserID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

func (g *Gateway) removeMember(c echo.Context) error {
	gid, err := pathID(c, "id")
	if err != nil {
		return err
	}
	uid, err := pathID(c, "uid")
	if err != nil {
		return err
	}
	if err := g.svc.RemoveMember(c.Request().Context(), session(c), gid, uid); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (g *Gateway) send(c echo.Context) error {
	var in core.SendInput
	if err := wire.DecodeRequest(c.Response(), c.Request(), &in); err != nil {
		return err
	}
	res, err := g.svc.Send(c.Request().Context(), session(c), in)
	if err != nil {
		return err
	}
	if res.Replayed {
		c.Response().Header().Set("Idempotent-Replayed", "true")
	}
	b := make([]byte, 0, len(res.Raw)+16)
	b = append(append(append(b, `{"message":`...), res.Raw...), "}\n"...)
	return c.JSONBlob(http.StatusCreated, b)
}

func (g *Gateway) conversations(c echo.Context) error {
	limit, err := queryLimit(c)
	if err != nil {
		return err
	}
	cs, err := g.svc.Conversations(c.Request().Context(), session(c), limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"conversations": cs})
}

func (g *Gateway) history(c echo.Context) error {
	before, err := queryID(c, "before")
	if err != nil {
		return err
	}
	after, err := queryID(c, "after")
	if err != nil {
		return err
	}
	around, err := queryID(c, "around")
	if err != nil {
		return err
	}
	limit, err := queryLimit(c)
	if err != nil {
		return err
	}
	if around != 0 {
		if before != 0 || after != 0 {
			return core.Errorf(core.KindInvalid, "invalid_around", "around cannot be combined with before or after")
		}
		a, err := g.svc.HistoryAround(c.Request().Context(), session(c), c.Param("id"), around, limit)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, a)
	}
	msgs, more, err := g.svc.History(c.Request().Context(), session(c), c.Param("id"), before, after, limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, messagePage{msgs, more})
}

// messagePage is what GET history and mentions answer.
type messagePage struct {
	Messages []json.RawMessage `json:"messages"`
	HasMore  bool              `json:"has_more"`
}

// pageQuery reads the before and limit of a newest-first page.
func pageQuery(c echo.Context) (before core.ID, limit int, err error) {
	if before, err = queryID(c, "before"); err != nil {
		return 0, 0, err
	}
	limit, err = queryLimit(c)
	return before, limit, err
}

func (g *Gateway) search(c echo.Context) error {
	before, limit, err := pageQuery(c)
	if err != nil {
		return err
	}
	found, more, err := g.svc.Search(c.Request().Context(), session(c), c.QueryParam("q"), c.QueryParam("conversation_id"), before, limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, struct {
		Results []core.Found `json:"results"`
		HasMore bool         `json:"has_more"`
	}{found, more})
}

func (g *Gateway) mentions(c echo.Context) error {
	before, limit, err := pageQuery(c)
	if err != nil {
		return err
	}
	msgs, more, err := g.svc.Mentions(c.Request().Context(), session(c), before, limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, messagePage{msgs, more})
}

func (g *Gateway) markRead(c echo.Context) error {
	var in struct {
		MessageID *core.ID `json:"message_id"`
	}
	if err := wire.DecodeRequest(c.Response(), c.Request(), &in); err != nil {
		return err
	}
	if in.MessageID == nil {
		return core.Errorf(core.KindInvalid, "invalid_field", "message_id is required")
	}
	if err := g.svc.MarkRead(c.Request().Context(), session(c), c.Param("id"), *in.MessageID); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
