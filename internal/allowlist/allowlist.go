// Package allowlist decides which Databricks hosts and subscriptions the
// service may act on (DATABRICKS_ALLOWED_HOSTS, DATABRICKS_ALLOWED_SUBSCRIPTIONS).
//
// A host pattern is one of:
//
//	host          that host on port 443
//	host:port     exactly that host and port
//	*.suffix      any subdomain of suffix (one or more labels) on port 443
//	*.suffix:port any subdomain of suffix on that port
//
// Hosts compare without regard to case. The management token (an ARM token)
// is sent only to a workspace host that ARM returned and this list accepts.
package allowlist

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

type pattern struct {
	host     string // lower case; without "*." for wildcards
	wildcard bool
	port     string
}

// Hosts is a parsed host allow-list.
type Hosts struct{ patterns []pattern }

// validLabel: a lower-case DNS label, 1-63 of a-z 0-9 -, not starting or
// ending with '-'. (Written out: a regexp with {0,61} costs start-up time.)
func validLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		if c := l[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// ParseHosts parses comma-separated host patterns. An empty list allows nothing.
func ParseHosts(list string) (Hosts, error) {
	var h Hosts
	for _, raw := range strings.Split(list, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		p, err := parsePattern(raw)
		if err != nil {
			return Hosts{}, fmt.Errorf("host pattern %q: %w", raw, err)
		}
		h.patterns = append(h.patterns, p)
	}
	return h, nil
}

func parsePattern(raw string) (pattern, error) {
	s := strings.ToLower(raw)
	p := pattern{port: "443"}
	if host, port, err := net.SplitHostPort(s); err == nil {
		n, perr := strconv.Atoi(port)
		if perr != nil || n < 1 || n > 65535 {
			return pattern{}, fmt.Errorf("port must be 1-65535")
		}
		s, p.port = host, strconv.Itoa(n)
	} else if strings.Contains(s, ":") && net.ParseIP(s) == nil {
		return pattern{}, fmt.Errorf("not host, host:port or *.suffix")
	}
	if rest, ok := strings.CutPrefix(s, "*."); ok {
		p.wildcard, s = true, rest
	}
	if ip := net.ParseIP(s); ip != nil {
		if p.wildcard {
			return pattern{}, fmt.Errorf("a wildcard needs a DNS suffix, not an IP address")
		}
		p.host = ip.String()
		return p, nil
	}
	labels := strings.Split(s, ".")
	if p.wildcard && len(labels) < 2 {
		return pattern{}, fmt.Errorf("a wildcard suffix needs at least two labels (like *.azuredatabricks.net)")
	}
	for _, l := range labels {
		if !validLabel(l) {
			return pattern{}, fmt.Errorf("%q is not a valid DNS label", l)
		}
	}
	p.host = s
	return p, nil
}

// Allows reports whether hostport ("host" meaning port 443, or "host:port")
// matches a pattern.
func (h Hosts) Allows(hostport string) bool {
	host, port := strings.ToLower(hostport), "443"
	if hh, pp, err := net.SplitHostPort(host); err == nil {
		host, port = hh, pp
	}
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	}
	host = strings.TrimSuffix(host, ".")
	for _, p := range h.patterns {
		if p.port != port {
			continue
		}
		if p.wildcard {
			if strings.HasSuffix(host, "."+p.host) && len(host) > len(p.host)+1 {
				return true
			}
		} else if host == p.host {
			return true
		}
	}
	return false
}

// Empty reports whether no pattern was given.
func (h Hosts) Empty() bool { return len(h.patterns) == 0 }

// String lists the patterns, for the start-up log.
func (h Hosts) String() string {
	out := make([]string, len(h.patterns))
	for i, p := range h.patterns {
		s := p.host
		if p.wildcard {
			s = "*." + s
		}
		if p.port != "443" {
			s = net.JoinHostPort(s, p.port)
		}
		out[i] = s
	}
	return strings.Join(out, ",")
}

// Subscriptions is a subscription allow-list; empty allows any.
type Subscriptions struct{ ids map[string]bool }

// ParseSubscriptions parses comma-separated subscription ids.
func ParseSubscriptions(list string) (Subscriptions, error) {
	s := Subscriptions{ids: map[string]bool{}}
	for _, raw := range strings.Split(list, ",") {
		id := strings.ToLower(strings.TrimSpace(raw))
		if id == "" {
			continue
		}
		if !tokens.IsGUID(id) {
			return Subscriptions{}, fmt.Errorf("%q is not a subscription id (a GUID)", strings.TrimSpace(raw))
		}
		s.ids[id] = true
	}
	return s, nil
}

// Allows reports whether the subscription may be used; ids compare
// without regard to case.
func (s Subscriptions) Allows(id string) bool {
	return len(s.ids) == 0 || s.ids[strings.ToLower(id)]
}

// IsLoopback reports whether host (without port) is a loopback address or
// "localhost": the only hosts plain http may reach, and only with
// ALLOW_INSECURE_LOOPBACK.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
