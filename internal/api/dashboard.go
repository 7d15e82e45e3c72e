package api

import (
	"embed"
	"io/fs"
	"net/http"
)

// The dashboard is plain HTML, CSS and JavaScript embedded in the binary: no
// CDN, no external font, nothing fetched from elsewhere. The Content
// Security Policy below holds it to that.
//
//go:embed dashboard
var dashboardFS embed.FS

const dashboardCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func serveDashboard(w http.ResponseWriter, r *http.Request) {
	page, err := dashboardFS.ReadFile("dashboard/index.html")
	if err != nil {
		http.Error(w, "dashboard missing from this build", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Security-Policy", dashboardCSP)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(page)
}

func assetHandler() http.Handler {
	sub, _ := fs.Sub(dashboardFS, "dashboard")
	files := http.FileServer(http.FS(sub))
	return http.StripPrefix("/assets/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", dashboardCSP)
		files.ServeHTTP(w, r)
	}))
}
