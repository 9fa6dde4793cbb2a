package web_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/internal/testkit"
	"github.com/chatgate/chatgate/web"
)

func TestHandlerServesFiles(t *testing.T) {
	h := web.Handler()
	for path, ctype := range map[string]string{
		"/":                   "text/html; charset=utf-8",
		"/assets/app.js":      "text/javascript; charset=utf-8",
		"/assets/chatgate.js": "text/javascript; charset=utf-8",
		"/assets/style.css":   "text/css; charset=utf-8",
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		require.Equal(t, http.StatusOK, w.Code, path)
		require.Equal(t, ctype, w.Header().Get("Content-Type"), path)
		require.Equal(t, "no-cache", w.Header().Get("Cache-Control"), path)
		require.Equal(t, web.CSP, w.Header().Get("Content-Security-Policy"), path)
		require.Equal(t, "nosniff", w.Header().Get("X-Content-Type-Options"), path)
		require.NotEmpty(t, w.Header().Get("ETag"), path)
		require.NotZero(t, w.Body.Len(), path)

		// Revalidation by ETag.
		r := httptest.NewRequest("GET", path, nil)
		r.Header.Set("If-None-Match", w.Header().Get("ETag"))
		w2 := httptest.NewRecorder()
		h.ServeHTTP(w2, r)
		require.Equal(t, http.StatusNotModified, w2.Code, path)
	}
	for _, path := range []string{"/assets/index.html", "/assets/", "/assets/nope.js", "/index.html", "/static/app.js"} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		require.Equal(t, http.StatusNotFound, w.Code, path)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/", nil))
	require.Equal(t, http.StatusMethodNotAllowed, w.Code)

	// The CSP allows no inline script or style and nothing from elsewhere.
	for _, d := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "connect-src 'self' ws: wss:", "img-src 'self' data:"} {
		require.Contains(t, web.CSP, d)
	}
	require.NotContains(t, web.CSP, "unsafe")
}

// TestNodeMountsWebClient: a node serves the client at / and /assets/*,
// and the API's own answers are untouched.
func TestNodeMountsWebClient(t *testing.T) {
	n := testkit.Start(t)
	get := func(path string) (*http.Response, string) {
		resp, err := http.Get(n.URL() + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, string(b)
	}
	resp, body := get("/")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	require.Contains(t, body, `<script type="module" src="/assets/app.js">`)
	resp, body = get("/assets/chatgate.js")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "export class Client")

	resp, body = get("/v1/nope")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.JSONEq(t, `{"error":{"code":"not_found","message":"no such endpoint"}}`, body)
	require.Equal(t, "", resp.Header.Get("Content-Security-Policy"))
	resp, body = get("/healthz")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "ok", strings.TrimSpace(body))
	resp, _ = get("/v1/negotiate")
	require.Equal(t, "application/json", strings.Split(resp.Header.Get("Content-Type"), ";")[0])
}

// On a cluster the page may be sent to another node: its origin is in
// connect-src, and junk from discovery is not.
func TestHandlerForClusterNodes(t *testing.T) {
	h := web.HandlerFor(func() []string {
		return []string{"http://127.0.0.1:8082", "https://chat-3.example:443/", "javascript:alert(1)", "::"}
	})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	csp := w.Header().Get("Content-Security-Policy")
	require.Contains(t, csp, "connect-src 'self' ws: wss: http://127.0.0.1:8082 https://chat-3.example:443;")
	require.NotContains(t, csp, "javascript")
}
