package statuspage

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"time"
)

//go:embed assets
var assets embed.FS

// Page serves the status page and its JSON. Mount Page itself at "/" and
// "/assets/*" without the admin token (they hold no data), and JSON behind
// it.
type Page struct {
	index  []byte
	static http.Handler
	status func(context.Context) Status
}

// Options configure a Page.
type Options struct {
	// Status returns the current picture; it is called once per JSON
	// request and may do I/O bounded by ctx.
	Status func(ctx context.Context) Status
	// TokenRequired tells the page to ask for the admin token before its
	// first request (rather than learning it from a 401).
	TokenRequired bool
	// StatusPath is where JSON is mounted ["/admin/status"].
	StatusPath string
}

// New builds a Page.
func New(opts Options) *Page {
	if opts.StatusPath == "" {
		opts.StatusPath = "/admin/status"
	}
	index, err := assets.ReadFile("assets/index.html")
	if err != nil {
		panic(err) // embedded at build time
	}
	req := "false"
	if opts.TokenRequired {
		req = "true"
	}
	index = bytes.ReplaceAll(index, []byte("{{token_required}}"), []byte(req))
	index = bytes.ReplaceAll(index, []byte("{{status_path}}"), []byte(opts.StatusPath))
	sub, _ := fs.Sub(assets, "assets")
	return &Page{index: index, static: http.StripPrefix("/assets/", http.FileServerFS(sub)), status: opts.Status}
}

// securityHeaders: scripts and styles from this origin only (no inline
// code, nothing fetched elsewhere), no framing, no referrer.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; "+
		"img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-cache")
}

// ServeHTTP serves the page at "/" and its files under "/assets/".
func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w.Header())
	if r.URL.Path == "/" || r.URL.Path == "/index.html" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(p.index))
		return
	}
	p.static.ServeHTTP(w, r)
}

// JSON answers the current Status.
func (p *Page) JSON(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	st := p.status(ctx)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(st)
}
