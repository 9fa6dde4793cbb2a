// Package web is chatgate's browser client: static files (plain ES
// modules, no build step) embedded in the binary and served by every node.
//
//	/                  index.html, the app
//	/assets/app.js     the app (UI)
//	/assets/chatgate.js the JavaScript client library, the twin of client/
//	/assets/style.css
//
// Everything is served with Cache-Control: no-cache (browsers revalidate
// by ETag, so a new binary's files are picked up at once) and a strict
// Content-Security-Policy: only the node's own scripts and styles run, so
// even a rendering bug could not execute a message's content.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"
)

//go:embed static
var static embed.FS

// CSP is the Content-Security-Policy of every file served. connect-src
// allows ws: and wss: because CSP's 'self' does not cover WebSocket URLs
// in every browser.
const CSP = "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self'; script-src 'self'; " +
	"img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// policy is CSP with the nodes' origins (and their WebSocket twins) added
// to connect-src.
func policy(nodes func() []string) string {
	if nodes == nil {
		return CSP
	}
	var extra []string
	for _, raw := range nodes() {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			continue
		}
		extra = append(extra, u.Scheme+"://"+u.Host)
	}
	if len(extra) == 0 {
		return CSP
	}
	return strings.Replace(CSP, "connect-src 'self' ws: wss:", "connect-src 'self' ws: wss: "+strings.Join(extra, " "), 1)
}

type file struct {
	name string
	data []byte
	etag string
	ctyp string
}

var (
	filesOnce sync.Once
	files     map[string]*file // by URL path
)

func load() {
	files = map[string]*file{}
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err)
	}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		f := &file{name: p, data: b, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, ctyp: contentType(p)}
		if p == "index.html" {
			files["/"] = f
		} else {
			files["/assets/"+p] = f
		}
		return nil
	})
	if err != nil {
		panic(err)
	}
}

func contentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	}
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}

// Paths are the URL paths Handler serves ("/" and "/assets/*"), for
// routers that mount it.
var Paths = []string{"/", "/assets/*"}

// Handler serves the web client: index.html at "/" and the other files
// under "/assets/". Other paths get 404.
func Handler() http.Handler { return HandlerFor(nil) }

// HandlerFor is Handler for a node of a cluster: negotiation may send the
// page to another node, so the policy's connect-src also names the origins
// nodes() returns (the healthy nodes discovery knows, asked per request).
func HandlerFor(nodes func() []string) http.Handler {
	filesOnce.Do(load)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		f, ok := files[r.URL.Path]
		if !ok || strings.HasPrefix(r.URL.Path, "/assets/index.html") {
			http.NotFound(w, r)
			return
		}
		h.Set("Content-Type", f.ctyp)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", f.etag)
		h.Set("Content-Security-Policy", policy(nodes))
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.data))
	})
}
