// Package origin parses and compares web origins as RFC 6454 defines them:
// an origin is the triple (scheme, host, port), so https://a.example,
// http://a.example, https://a.example:8443 and https://a.example.evil.com
// are four different origins, while https://A.example and
// https://a.example:443 are the same one. The opaque origin "null" equals
// only itself.
package origin

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Origin is a tuple origin, or the opaque origin "null" (Null true).
type Origin struct {
	Scheme string // lower case
	Host   string // lower case; IPv6 without brackets
	Port   int    // explicit, or the scheme's default
	Null   bool
}

// String serializes the origin the way a browser sends it in the Origin
// header: the default port is left out.
func (o Origin) String() string {
	if o.Null {
		return "null"
	}
	host := o.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if o.Port == DefaultPort(o.Scheme) {
		return o.Scheme + "://" + host
	}
	return o.Scheme + "://" + host + ":" + strconv.Itoa(o.Port)
}

// Equal reports whether two origins are the same origin (RFC 6454 §5).
// Two "null" origins compare equal here only because an allow-list entry
// "null" is meant to match the header value "null".
func (o Origin) Equal(p Origin) bool {
	if o.Null || p.Null {
		return o.Null && p.Null
	}
	return o.Scheme == p.Scheme && o.Host == p.Host && o.Port == p.Port
}

// DefaultPort is the port a scheme implies, or 0 when it has none.
func DefaultPort(scheme string) int {
	switch scheme {
	case "http", "ws":
		return 80
	case "https", "wss":
		return 443
	case "ftp":
		return 21
	}
	return 0
}

// Parse reads a serialized origin: "null", or scheme "://" host [":" port]
// with nothing after it (a single trailing "/" is tolerated, as people copy
// origins from the address bar). Paths, queries, fragments, user info and
// wildcards are refused: an origin is not a URL pattern.
func Parse(s string) (Origin, error) {
	if s == "null" {
		return Origin{Null: true}, nil
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || scheme == "" {
		return Origin{}, fmt.Errorf("%q is not an origin: write scheme://host[:port], e.g. https://admin.example.com", s)
	}
	for i, r := range scheme {
		isAlpha := (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if !isAlpha && (i == 0 || !(r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.')) {
			return Origin{}, fmt.Errorf("%q is not an origin: bad scheme %q", s, scheme)
		}
	}
	rest = strings.TrimSuffix(rest, "/")
	if rest == "" {
		return Origin{}, fmt.Errorf("%q is not an origin: the host is missing", s)
	}
	if strings.ContainsAny(rest, "/?#@*\\ \t") {
		return Origin{}, fmt.Errorf("%q is not an origin: only scheme://host[:port] is allowed (no path, query, user or wildcard)", s)
	}
	for _, r := range rest {
		if r > 0x7e || r < 0x21 {
			return Origin{}, fmt.Errorf("%q is not an origin: write an internationalized host in its ASCII (punycode) form", s)
		}
	}
	o := Origin{Scheme: strings.ToLower(scheme)}
	host, port := rest, ""
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return Origin{}, fmt.Errorf("%q is not an origin: unclosed [ in the host", s)
		}
		host, port = rest[1:end], rest[end+1:]
		if net.ParseIP(host) == nil || !strings.Contains(host, ":") {
			return Origin{}, fmt.Errorf("%q is not an origin: %q is not an IPv6 address", s, host)
		}
		host = net.ParseIP(host).String()
		if port != "" {
			if !strings.HasPrefix(port, ":") {
				return Origin{}, fmt.Errorf("%q is not an origin: junk after the host", s)
			}
			port = port[1:]
		}
	} else if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		host, port = rest[:i], rest[i+1:]
	}
	if host == "" || (strings.Contains(host, ":") && net.ParseIP(host) == nil) || (!strings.HasPrefix(rest, "[") && strings.Contains(host, ":")) {
		return Origin{}, fmt.Errorf("%q is not an origin: bad host", s)
	}
	o.Host = strings.ToLower(host)
	if port == "" {
		o.Port = DefaultPort(o.Scheme)
	} else {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port[0] == '+' {
			return Origin{}, fmt.Errorf("%q is not an origin: bad port %q", s, port)
		}
		o.Port = n
	}
	return o, nil
}

// ParseHeader reads the value of a request's Origin header. It is stricter
// than Parse: browsers send exactly the serialization, never a trailing
// slash, so anything else is not trusted as an origin.
func ParseHeader(v string) (Origin, bool) {
	if v == "" || strings.HasSuffix(v, "/") || strings.Contains(v, ",") {
		return Origin{}, false
	}
	o, err := Parse(v)
	return o, err == nil
}

// List is an allow-list of origins. There is no "*": an API that answers
// every origin lets any web page its operator opens read it.
type List struct {
	Origins []Origin
}

// ParseList parses allow-list entries; every bad entry is reported.
func ParseList(entries []string) (List, error) {
	var l List
	var bad []string
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "*" {
			bad = append(bad, `"*" is refused: it would let every web page the operator opens call the API; list the origins that may`)
			continue
		}
		o, err := Parse(e)
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		l.Origins = append(l.Origins, o)
	}
	if len(bad) > 0 {
		return l, fmt.Errorf("%s", strings.Join(bad, "; "))
	}
	return l, nil
}

// Allows reports whether the Origin header value v is on the list.
func (l List) Allows(v string) bool {
	o, ok := ParseHeader(v)
	if !ok {
		return false
	}
	for _, a := range l.Origins {
		if a.Equal(o) {
			return true
		}
	}
	return false
}

// Empty reports whether nothing is allowed (same-origin only).
func (l List) Empty() bool { return len(l.Origins) == 0 }
