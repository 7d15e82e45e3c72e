package api

import (
	"net/http"
	"strings"

	"github.com/rs/cors"

	"github.com/sluice-db/sluice/internal/api/origin"
	"github.com/sluice-db/sluice/internal/failure"
)

// CORS policy of the API. The default, an empty allow-list, is same-origin
// only: no cross-origin response carries a CORS header.
//
// rs/cors does the protocol work; what it falls short of is fixed here:
//   - an empty AllowedOrigins means "every origin" in rs/cors, and entries
//     are compared as lower-cased strings with wildcards. Origins are
//     matched here instead (AllowOriginFunc) as RFC 6454 tuples: scheme,
//     host and port, default ports made explicit, no wildcards;
//   - "*" in rs/cors admits every origin, the opaque "null" too; here "*"
//     is refused, and "null" matches only when listed;
//   - rs/cors always accepts OPTIONS as a preflight's requested method;
//     here a preflight for anything but the allowed methods gets no CORS
//     headers at all.
type CORS struct {
	list        origin.List
	credentials bool
	inner       *cors.Cors
}

// Allowed methods and request headers for cross-origin calls, and how long
// a browser may cache a preflight answer.
var (
	corsMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost}
	corsHeaders = []string{"Authorization", "Content-Type"}
)

const corsMaxAge = 600

// NewCORS checks the allow-list and builds the policy.
func NewCORS(allowOrigins []string, credentials bool) (*CORS, error) {
	list, err := origin.ParseList(allowOrigins)
	if err != nil {
		return nil, failure.Wrap(err, failure.Usage, "SLUICE-CONFIG-CORS", "allowed origins").
			WithHint("give each origin as scheme://host[:port], e.g. --allow-origin https://admin.example.com")
	}
	c := &CORS{list: list, credentials: credentials}
	c.inner = cors.New(cors.Options{
		AllowOriginFunc:  list.Allows,
		AllowedMethods:   corsMethods,
		AllowedHeaders:   corsHeaders,
		MaxAge:           corsMaxAge,
		AllowCredentials: credentials,
	})
	return c, nil
}

// Allows reports whether an Origin header value is on the allow-list.
func (c *CORS) Allows(o string) bool { return c.list.Allows(o) }

// Handler wraps h with the policy.
func (c *CORS) Handler(h http.Handler) http.Handler {
	inner := c.inner.Handler(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			if !methodAllowed(r.Header.Get("Access-Control-Request-Method")) {
				w.Header().Add("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		inner.ServeHTTP(w, r)
	})
}

func methodAllowed(m string) bool {
	for _, a := range corsMethods {
		if a == m {
			return true
		}
	}
	return false
}

// sameOrigin reports whether the Origin header names the server itself, as
// the request's Host header says it was addressed.
func sameOrigin(r *http.Request) bool {
	o, ok := origin.ParseHeader(r.Header.Get("Origin"))
	if !ok || o.Null {
		return false
	}
	host, port := r.Host, ""
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		host, port = host[:i], host[i+1:]
	}
	self, err := origin.Parse(o.Scheme + "://" + host + prefixed(port))
	return err == nil && self.Equal(o)
}

func prefixed(port string) string {
	if port == "" {
		return ""
	}
	return ":" + port
}
