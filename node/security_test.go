package node_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/core/embedded"
	"github.com/chatgate/chatgate/internal/testkit"
	"github.com/chatgate/chatgate/node"
	"github.com/chatgate/chatgate/web"
)

// Security basics, as written in docs/protocol.md ("Accounts and
// devices", "Conventions") and checked here: how passwords are hashed,
// that tokens are random and stored only as hashes and never compared as
// raw secrets, the headers the web client and the API send, CORS, and
// that logs and error answers hold no tokens, passwords or message
// content.

// TestSecurityPasswordHashes reads what the store keeps for a password:
// argon2id in PHC form with the documented parameters, a 16-byte random
// salt and a 32-byte key; no file of the data directory holds a password
// or a token.
func TestSecurityPasswordHashes(t *testing.T) {
	n := testkit.Start(t)
	pw := "Tr0ub4dor&3 " + randHex(t)
	var names, tokens []string
	for i := 0; i < 2; i++ { // the same password twice: salted, so two hashes
		c := testkit.NewClient(t, n.URL())
		name := testkit.UniqueName("pwh")
		m := requireStatus(t, c.Do("POST", "/v1/auth/signup", map[string]any{"username": name, "password": pw}), http.StatusCreated)
		names, tokens = append(names, name), append(tokens, m["token"].(string))
	}
	dir := n.Dir
	n.Stop(t)

	ids, err := core.NewSnowflake(1)
	require.NoError(t, err)
	st, err := embedded.Open(dir, ids, testkit.Logger(t), embedded.Options{})
	require.NoError(t, err)
	var salts, keys []string
	phc := regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$`)
	for _, name := range names {
		rec, err := st.UserByName(context.Background(), name)
		require.NoError(t, err)
		h := string(rec.PasswordHash)
		mm := phc.FindStringSubmatch(h)
		require.NotNil(t, mm, "stored hash %q is not argon2id m=19456 KiB, t=2, p=1 in PHC form", h)
		salt, err := base64.RawStdEncoding.DecodeString(mm[1])
		require.NoError(t, err)
		key, err := base64.RawStdEncoding.DecodeString(mm[2])
		require.NoError(t, err)
		require.Len(t, salt, 16, "salt bytes")
		require.Len(t, key, 32, "key bytes")
		salts, keys = append(salts, mm[1]), append(keys, mm[2])
		ok, err := core.CheckPassword(rec.PasswordHash, pw)
		require.NoError(t, err)
		require.True(t, ok)
		ok, err = core.CheckPassword(rec.PasswordHash, pw+" ")
		require.NoError(t, err)
		require.False(t, ok)
	}
	require.NoError(t, st.Close())
	require.NotEqual(t, salts[0], salts[1], "each hash has its own salt")
	require.NotEqual(t, keys[0], keys[1])

	// A stolen data directory yields no password and no usable token: a
	// token is stored only as its SHA-256.
	var hashesFound int
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		assert.False(t, bytes.Contains(b, []byte(pw)), "%s holds the password", p)
		for _, tok := range tokens {
			assert.False(t, bytes.Contains(b, []byte(tok)), "%s holds a token", p)
			raw, _ := base64.RawURLEncoding.DecodeString(tok)
			assert.False(t, bytes.Contains(b, raw), "%s holds a token's bytes", p)
			sum := sha256.Sum256([]byte(tok))
			if bytes.Contains(b, []byte(hex.EncodeToString(sum[:]))) {
				hashesFound++
			}
		}
		return nil
	}))
	require.Equal(t, len(tokens), hashesFound, "each token is stored as its SHA-256, once")
}

// TestSecurityTokens: tokens are 256 random bits (at least 128 are asked
// for), distinct, and only the exact token authenticates.
func TestSecurityTokens(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		tok, hash, err := core.NewToken()
		require.NoError(t, err)
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		require.NoError(t, err)
		require.Len(t, raw, 32, "256 bits")
		sum := sha256.Sum256([]byte(tok))
		require.Equal(t, sum[:], hash)
		require.False(t, seen[tok], "a token repeated")
		seen[tok] = true
	}

	n := testkit.Start(t)
	a, _ := signupDevice(t, n.URL(), "tok")
	toks := []string{a.Token}
	for i := 0; i < 3; i++ {
		d, _ := loginDevice(t, a)
		toks = append(toks, d.Token)
	}
	for i, tok := range toks {
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		require.NoError(t, err, "tokens are unpadded base64url")
		require.GreaterOrEqual(t, len(raw)*8, 128)
		require.Len(t, raw, 32)
		for _, other := range toks[:i] {
			require.NotEqual(t, other, tok)
		}
	}
	// Near misses of a valid token are refused.
	tok := toks[0]
	flip := func(i int) string {
		b := []byte(tok)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	anon := testkit.NewClient(t, n.URL())
	for _, bad := range []string{flip(0), flip(len(tok) / 2), flip(len(tok) - 1), tok[:len(tok)-1], tok + "A", tok[:16], strings.ToUpper(tok), tok + "=", " " + tok + "x"} {
		anon.Token = bad
		requireError(t, anon.Do("GET", "/v1/me", nil), http.StatusUnauthorized, "unauthorized")
	}
	anon.Token = tok
	requireStatus(t, anon.Do("GET", "/v1/me", nil), http.StatusOK)
}

// secretName is an identifier that names a secret (or what is compared in
// its place); comparing one with == or bytes.Equal leaks its value by
// timing.
var secretName = regexp.MustCompile(`(?i)(token|passw|secret|signature|hmac|apikey|api_key|mac$)`)

// TestSecuritySecretsComparedInConstantTime reads the server's sources:
// no secret is compared with ==, !=, bytes.Equal, strings.EqualFold or
// the like. Passwords are checked with subtle.ConstantTimeCompare
// (core/password.go), tokens are looked up by their SHA-256 (the store's
// key), never compared.
func TestSecuritySecretsComparedInConstantTime(t *testing.T) {
	// The check itself: it must see these.
	self := `package x
func f(token, other string, sig, wantSignature []byte) bool {
	if token == "" || len(sig) == 0 || sig == nil { return false } // constants: fine
	return token == other || bytes.Equal(sig, wantSignature) || strings.EqualFold(a.Password, b)
}`
	selfFound := secretComparisons(t, token.NewFileSet(), "self.go", self)
	require.Len(t, selfFound, 3, "the check must find the three comparisons of secrets in %s: %v", self, selfFound)

	fset := token.NewFileSet()
	var found []string
	files := 0
	for _, dir := range []string{"core", "gateway", "wire", "transports", "push", "node", "web", "discovery", "metrics", "client", "cmd"} {
		if _, err := os.Stat(filepath.Join("..", dir)); err != nil {
			continue
		}
		err := filepath.WalkDir(filepath.Join("..", dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == "testdata" {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return nil
			}
			files++
			found = append(found, secretComparisons(t, fset, p, nil)...)
			return nil
		})
		require.NoError(t, err)
	}
	require.Greater(t, files, 50, "the server's sources were not found")
	assert.Empty(t, found, "secrets compared in variable time: use crypto/subtle.ConstantTimeCompare or hmac.Equal")
}

// secretComparisons parses one file (src, or read from name) and returns
// where it compares a secret in variable time.
func secretComparisons(t testing.TB, fset *token.FileSet, name string, src any) []string {
	t.Helper()
	f, err := parser.ParseFile(fset, name, src, 0)
	require.NoError(t, err)
	var found []string
	where := func(n ast.Node) string {
		return fmt.Sprintf("%s (%s)", fset.Position(n.Pos()), types.ExprString(n.(ast.Expr)))
	}
	ast.Inspect(f, func(nd ast.Node) bool {
		switch x := nd.(type) {
		case *ast.BinaryExpr:
			if (x.Op == token.EQL || x.Op == token.NEQ) && secretCompare(x.X, x.Y) {
				found = append(found, where(x))
			}
		case *ast.CallExpr:
			sel, ok := x.Fun.(*ast.SelectorExpr)
			if !ok || len(x.Args) != 2 {
				break
			}
			pkg, _ := sel.X.(*ast.Ident)
			if pkg == nil {
				break
			}
			switch pkg.Name + "." + sel.Sel.Name {
			case "bytes.Equal", "bytes.Compare", "strings.EqualFold", "strings.Compare", "reflect.DeepEqual":
				if secretCompare(x.Args[0], x.Args[1]) {
					found = append(found, where(x))
				}
			}
		}
		return true
	})
	return found
}

// secretCompare reports whether a comparison of x and y compares a secret's
// value: one side names a secret and the other is not a constant (nil, a
// literal, a length).
func secretCompare(x, y ast.Expr) bool {
	trivial := func(e ast.Expr) bool {
		switch v := e.(type) {
		case *ast.BasicLit:
			return true
		case *ast.Ident:
			return v.Name == "nil" || v.Name == "true" || v.Name == "false"
		case *ast.CallExpr:
			if id, ok := v.Fun.(*ast.Ident); ok && (id.Name == "len" || id.Name == "cap") {
				return true
			}
		}
		return false
	}
	named := func(e ast.Expr) bool {
		switch v := e.(type) {
		case *ast.Ident:
			return secretName.MatchString(v.Name)
		case *ast.SelectorExpr:
			return secretName.MatchString(v.Sel.Name)
		case *ast.CallExpr: // string(token), tokenOf(r)
			if id, ok := v.Fun.(*ast.Ident); ok && secretName.MatchString(id.Name) {
				return true
			}
			if sel, ok := v.Fun.(*ast.SelectorExpr); ok && secretName.MatchString(sel.Sel.Name) {
				return true
			}
			for _, a := range v.Args {
				if id, ok := a.(*ast.Ident); ok && secretName.MatchString(id.Name) {
					return true
				}
			}
		}
		return false
	}
	if trivial(x) || trivial(y) {
		return false
	}
	return named(x) || named(y)
}

// TestSecurityHeaders checks the headers set on purpose: the web client's
// strict policy, no caching of event pages and streams, JSON answers and
// the 401 challenge.
func TestSecurityHeaders(t *testing.T) {
	n := testkit.Start(t)
	a := testkit.Signup(t, n.URL(), "hdr")

	t.Run("web client", func(t *testing.T) {
		for _, p := range []string{"/", "/assets/chatgate.js", "/assets/app.js", "/assets/style.css"} {
			for _, method := range []string{"GET", "HEAD"} {
				r := rawRequest(t, method, n.URL()+p, nil, nil)
				require.Equal(t, http.StatusOK, r.Status, "%s %s", method, p)
				h := r.Header
				csp := h.Get("Content-Security-Policy")
				assert.Equal(t, web.CSP, csp, "%s %s", method, p)
				for _, d := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'", "form-action 'self'"} {
					assert.Contains(t, csp, d)
				}
				assert.NotContains(t, csp, "unsafe-inline")
				assert.NotContains(t, csp, "unsafe-eval")
				assert.Equal(t, "nosniff", h.Get("X-Content-Type-Options"), "%s %s", method, p)
				assert.Equal(t, "no-referrer", h.Get("Referrer-Policy"), "%s %s", method, p)
				assert.Equal(t, "DENY", h.Get("X-Frame-Options"), "%s %s", method, p)
				assert.Equal(t, "no-cache", h.Get("Cache-Control"), "%s %s", method, p)
				assert.NotEmpty(t, h.Get("ETag"))
				assert.Empty(t, h.Get("Set-Cookie"), "the web client uses no cookies")
				assert.Empty(t, h.Get("Access-Control-Allow-Credentials"))
			}
		}
	})

	t.Run("api", func(t *testing.T) {
		auth := http.Header{"Authorization": {"Bearer " + a.Token}}
		// Event pages: never cached (they are a user's messages).
		for _, p := range []string{"/v1/poll?cursor=0", "/v1/longpoll?cursor=0&wait=0"} {
			r := rawRequest(t, "GET", n.URL()+p, auth, nil)
			require.Equal(t, http.StatusOK, r.Status)
			assert.Equal(t, "no-store", r.Header.Get("Cache-Control"), p)
			assert.Equal(t, "application/json", r.Header.Get("Content-Type"), p)
		}
		// SSE: never cached, never buffered.
		ctx, cancel := context.WithCancel(context.Background())
		req, err := http.NewRequestWithContext(ctx, "GET", n.URL()+"/v1/sse?cursor=0", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+a.Token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
		assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
		assert.Equal(t, "no", resp.Header.Get("X-Accel-Buffering"))
		assert.Empty(t, resp.Header.Get("Content-Encoding"))
		cancel()
		resp.Body.Close()
		// Answers are JSON, errors too, never text/html; a 401 names its
		// scheme; nothing sets a cookie.
		for _, c := range []struct {
			method, path string
			hdr          http.Header
			status       int
		}{
			{"GET", "/v1/me", auth, http.StatusOK},
			{"GET", "/v1/negotiate", nil, http.StatusOK},
			{"GET", "/v1/me", nil, http.StatusUnauthorized},
			{"GET", "/v1/nope", nil, http.StatusNotFound},
			{"DELETE", "/v1/me", auth, http.StatusMethodNotAllowed},
			{"GET", "/v1/users/<script>", auth, http.StatusBadRequest},
		} {
			r := rawRequest(t, c.method, n.URL()+c.path, c.hdr, nil)
			require.Equal(t, c.status, r.Status, "%s %s: %s", c.method, c.path, r.Body)
			assert.Contains(t, r.Header.Get("Content-Type"), "application/json", "%s %s", c.method, c.path)
			assert.Empty(t, r.Header.Get("Set-Cookie"))
			if c.status == http.StatusUnauthorized {
				assert.Equal(t, `Bearer realm="chatgate"`, r.Header.Get("WWW-Authenticate"))
			}
		}
	})

	// Answers holding tokens and messages are never cached, and never
	// sniffed into something a browser would run.
	t.Run("api hardening", func(t *testing.T) {
		var gaps []string
		check := func(what, got, want string) {
			switch {
			case got == "":
				gaps = append(gaps, what)
			case !strings.Contains(got, want):
				t.Errorf("%s: got %q, want %q", what, got, want)
			}
		}
		anon := testkit.NewClient(t, n.URL())
		name := testkit.UniqueName("hdr")
		su := anon.Do("POST", "/v1/auth/signup", map[string]any{"username": name, "password": password})
		require.Equal(t, http.StatusCreated, su.Status)
		li := anon.Do("POST", "/v1/auth/login", map[string]any{"username": name, "password": password})
		require.Equal(t, http.StatusOK, li.Status)
		me := a.Do("GET", "/v1/me", nil)
		check("Cache-Control: no-store on POST /v1/auth/signup (its body holds a token)", su.Header.Get("Cache-Control"), "no-store")
		check("Cache-Control: no-store on POST /v1/auth/login (its body holds a token)", li.Header.Get("Cache-Control"), "no-store")
		check("Cache-Control: no-store on authenticated reads (GET /v1/me)", me.Header.Get("Cache-Control"), "no-store")
		check("X-Content-Type-Options: nosniff on API answers", me.Header.Get("X-Content-Type-Options"), "nosniff")
		if len(gaps) > 0 {
			t.Errorf("not set:\n  %s", strings.Join(gaps, "\n  "))
		}
	})
}

// rawRequest sends one request with exactly the headers given.
func rawRequest(t testing.TB, method, url string, hdr http.Header, body io.Reader) testkit.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return testkit.Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// TestSecurityCORS: any origin may call the API with a bearer token, and
// no answer ever allows credentials (cookies), so a foreign page has no
// ambient authority to borrow.
func TestSecurityCORS(t *testing.T) {
	n := testkit.Start(t)
	a := testkit.Signup(t, n.URL(), "cors")
	noCreds := func(r testkit.Response, what string) {
		t.Helper()
		assert.Empty(t, r.Header.Values("Access-Control-Allow-Credentials"), "%s: credentials are never allowed", what)
		assert.Empty(t, r.Header.Get("Set-Cookie"), what)
	}
	for _, origin := range []string{"https://evil.example", "null", "http://localhost:9999"} {
		for _, c := range []struct{ method, path, headers string }{
			{"POST", "/v1/messages", "authorization, content-type"},
			{"GET", "/v1/sse", "authorization, last-event-id"},
			{"DELETE", "/v1/groups/1/members/2", "authorization"},
			{"PATCH", "/v1/me", "authorization, content-type"},
		} {
			what := fmt.Sprintf("preflight %s %s from %s", c.method, c.path, origin)
			r := rawRequest(t, "OPTIONS", n.URL()+c.path, http.Header{
				"Origin": {origin}, "Access-Control-Request-Method": {c.method}, "Access-Control-Request-Headers": {c.headers},
			}, nil)
			assert.Equal(t, http.StatusNoContent, r.Status, what)
			assert.Equal(t, "*", r.Header.Get("Access-Control-Allow-Origin"), what)
			allowed := strings.ToLower(r.Header.Get("Access-Control-Allow-Headers"))
			for _, h := range []string{"authorization", "content-type", "last-event-id"} {
				assert.Contains(t, allowed, h, what)
			}
			assert.Contains(t, r.Header.Get("Access-Control-Allow-Methods"), c.method, what)
			assert.Equal(t, "86400", r.Header.Get("Access-Control-Max-Age"), what)
			noCreds(r, what)
		}
		// Real answers, successes and errors alike, can be read by the
		// page (so it sees a 401 and signs in again), with a cookie sent
		// along or not.
		for _, c := range []struct {
			hdr    http.Header
			status int
		}{
			{http.Header{"Authorization": {"Bearer " + a.Token}}, http.StatusOK},
			{http.Header{"Authorization": {"Bearer " + a.Token}, "Cookie": {"session=1"}}, http.StatusOK},
			{http.Header{}, http.StatusUnauthorized},
		} {
			c.hdr.Set("Origin", origin)
			r := rawRequest(t, "GET", n.URL()+"/v1/me", c.hdr, nil)
			what := fmt.Sprintf("GET /v1/me from %s (%d)", origin, c.status)
			assert.Equal(t, c.status, r.Status, what)
			assert.Equal(t, "*", r.Header.Get("Access-Control-Allow-Origin"), what)
			assert.Contains(t, r.Header.Get("Access-Control-Expose-Headers"), "Idempotent-Replayed", what)
			noCreds(r, what)
		}
	}
	// A cookie alone is no credential.
	r := rawRequest(t, "GET", n.URL()+"/v1/me", http.Header{"Origin": {"https://evil.example"}, "Cookie": {"token=" + a.Token}}, nil)
	requireError(t, r, http.StatusUnauthorized, "unauthorized")
}

// syncBuffer is a log destination shared by the node's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSecurityLogsHoldNoSecrets runs a node logging at debug level into a
// buffer (its own logger and the process's default one) through signups,
// failed and good logins, messages of every kind, refused requests with
// the token in wrong places, streams opened with ?access_token=, a push
// and logouts; then no token, password or message content may be in the
// logs, nor in any error answer.
func TestSecurityLogsHoldNoSecrets(t *testing.T) {
	buf := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	oldDefault, oldW, oldF := slog.Default(), log.Writer(), log.Flags()
	slog.SetDefault(logger)
	t.Cleanup(func() {
		slog.SetDefault(oldDefault)
		log.SetOutput(oldW)
		log.SetFlags(oldF)
	})
	n := testkit.Start(t, func(c *node.Config) { c.Logger = logger; c.AccessLog = true })
	tag := randHex(t)
	var secrets []string
	secret := func(s string) string {
		v := s + "-" + tag
		secrets = append(secrets, v)
		return v
	}
	// Error answers must not carry the secrets of their request either.
	noEcho := func(r testkit.Response) {
		t.Helper()
		require.GreaterOrEqual(t, r.Status, 400)
		for _, s := range secrets {
			require.NotContains(t, string(r.Body), s, "an error answer repeats a secret")
		}
	}

	pwA, pwB, wrong, short := secret("Pw-alice"), secret("Pw-bob"), secret("Wrong"), "S"+tag[:5]
	secrets = append(secrets, short)
	anon := testkit.NewClient(t, n.URL())
	signup := func(pw string) *testkit.Client {
		c := testkit.NewClient(t, n.URL())
		name := testkit.UniqueName("logs")
		m := requireStatus(t, c.Do("POST", "/v1/auth/signup", map[string]any{"username": name, "password": pw}), http.StatusCreated)
		c.Token, c.User = m["token"].(string), m["user"].(map[string]any)
		c.ID = c.User["id"].(string)
		secrets = append(secrets, c.Token)
		return c
	}
	alice, bob := signup(pwA), signup(pwB)
	noEcho(anon.Do("POST", "/v1/auth/signup", map[string]any{"username": testkit.UniqueName("logs"), "password": short}))
	noEcho(anon.Do("POST", "/v1/auth/signup", map[string]any{"username": username(alice), "password": pwA}))
	noEcho(anon.Do("POST", "/v1/auth/login", map[string]any{"username": username(alice), "password": wrong}))
	noEcho(anon.Do("POST", "/v1/auth/login", map[string]any{"username": "nobody_" + tag, "password": wrong}))
	noEcho(anon.Do("POST", "/v1/auth/login", fmt.Sprintf(`{"username":%q,"password":%q`, username(alice), pwA)))
	m := requireStatus(t, anon.Do("POST", "/v1/auth/login", map[string]any{"username": username(alice), "password": pwA}), http.StatusOK)
	alice2 := testkit.NewClient(t, n.URL())
	alice2.Token, alice2.ID = m["token"].(string), alice.ID
	secrets = append(secrets, alice2.Token)

	// Messages: over HTTP, to a group, over WebSocket; refused ones too.
	send(t, alice, map[string]any{"to": bob.ID, "content": secret("direct content")})
	g := createGroup(t, alice, "logs "+tag, bob.ID)
	send(t, bob, map[string]any{"group_id": g["id"], "content": secret("group content")})
	long := secret("too long")
	noEcho(alice.Do("POST", "/v1/messages", map[string]any{"to": bob.ID, "content": strings.Repeat(long, 100_001/len(long)+1)}))
	noEcho(alice.Do("POST", "/v1/messages", fmt.Sprintf(`{"to":%q,"content":%q`, bob.ID, secret("truncated json"))))
	noEcho(alice.Do("POST", "/v1/messages", map[string]any{"to": "1", "content": secret("to nobody")}))
	noEcho(alice.Do("POST", "/v1/messages", map[string]any{"to": bob.ID, "content": secret("with bad key"), "client_msg_id": "bad\x01key"}))

	ws, resp, err := websocket.DefaultDialer.Dial("ws://"+n.Addr()+"/v1/ws?cursor=0&access_token="+alice2.Token, nil)
	require.NoError(t, err)
	resp.Body.Close()
	wsContent := secret("websocket content")
	require.NoError(t, ws.WriteJSON(map[string]any{"type": "send", "to": bob.ID, "content": wsContent, "client_msg_id": "w1"}))
	require.NoError(t, ws.WriteJSON(map[string]any{"type": "send", "group_id": "1", "content": secret("ws refused"), "client_msg_id": "w2"}))
	for sent, refused := false, false; !sent || !refused; {
		_ = ws.SetReadDeadline(time.Now().Add(time.Minute)) // only stops a hung test
		_, b, err := ws.ReadMessage()
		require.NoError(t, err)
		var ev map[string]any
		require.NoError(t, json.Unmarshal(b, &ev))
		sent = sent || ev["type"] == "sent"
		refused = refused || ev["type"] == "error"
	}
	// SSE with the token in the URL, as EventSource sends it.
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", n.URL()+"/v1/sse?cursor=0&access_token="+bob.Token, nil)
	require.NoError(t, err)
	sse, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, sse.StatusCode)
	_, err = sse.Body.Read(make([]byte, 64))
	require.NoError(t, err)
	cancel()
	sse.Body.Close()

	// The token in wrong places.
	noEcho(alice.Do("GET", "/v1/users/"+alice.Token, nil))
	noEcho(anon.Do("GET", "/v1/nope?access_token="+alice.Token, nil))
	noEcho(rawRequest(t, "GET", n.URL()+"/v1/me", http.Header{"Authorization": {"Token " + alice.Token}}, nil))
	noEcho(rawRequest(t, "GET", n.URL()+"/v1/me?access_token="+alice.Token, http.Header{"Authorization": {"Basic " + alice.Token}}, nil))
	noEcho(alice.Do("DELETE", "/v1/me?access_token="+alice.Token, nil))
	noEcho(alice.Do("POST", "/v1/messages", map[string]any{"to": bob.ID, "content": "x", "token": alice.Token}))
	noEcho(alice.Do("PATCH", "/v1/me", map[string]any{"display_name": "x", "password": pwA}))

	// A push: bob logs out (offline at once), then alice writes to him.
	requireStatus(t, bob.Do("POST", "/v1/auth/logout", nil), http.StatusNoContent)
	send(t, alice, map[string]any{"to": bob.ID, "content": secret("pushed content")})
	waitFor(func() bool { return strings.Contains(buf.String(), "push notification") })
	// Logouts, and the revoked tokens used again.
	require.NoError(t, ws.Close())
	requireStatus(t, alice2.Do("POST", "/v1/auth/logout", nil), http.StatusNoContent)
	requireStatus(t, alice.Do("POST", "/v1/auth/logout", nil), http.StatusNoContent)
	noEcho(alice.Do("GET", "/v1/me", nil))
	noEcho(rawRequest(t, "GET", n.URL()+"/v1/poll?access_token="+alice2.Token, nil, nil))
	n.Stop(t) // shutdown logs too

	logs := buf.String()
	require.Contains(t, logs, "chatgate listening", "the buffer must hold the node's logs")
	require.Contains(t, logs, "level=DEBUG", "debug logging must be on for this test to mean much")
	require.Contains(t, logs, "msg=request route=/v1/poll", "the access log must be on, and log the poll that carried a token in its query")
	for _, s := range secrets {
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, s) {
				t.Errorf("a log line holds a secret (%.12s…): %s", s, line)
			}
		}
	}
	t.Logf("%d bytes of logs checked for %d secrets", len(logs), len(secrets))
}
