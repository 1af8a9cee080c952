package hostsim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseTimeSpan(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"00:05:00", 5 * time.Minute, false},
		{"01:02:03", time.Hour + 2*time.Minute + 3*time.Second, false},
		{"1.00:00:00", 24 * time.Hour, false},
		{"00:00:00.80", 800 * time.Millisecond, false},
		{"-1", -1, false},
		{"5m", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		got, err := parseTimeSpan(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseTimeSpan(%q) = %v, %v; want %v, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestReadHostConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, "host.json"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"handler"}}}`)
	cfg, err := readHostConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RoutePrefix != "api" || cfg.FunctionTimeout != 0 || cfg.MaxConcurrentCalls != 0 || cfg.Forwarding || cfg.Proxying {
		t.Errorf("defaults = %+v", cfg)
	}
	write(`{"functionTimeout":"00:10:00",
	  "httpWorker":{"description":{"defaultExecutablePath":"legacy"}},
	  "customHandler":{"description":{"defaultExecutablePath":"handler","workingDirectory":"w","arguments":["a"]},
	    "enableForwardingHttpRequest":true,"enableProxyingHttpRequest":true},
	  "extensions":{"http":{"routePrefix":"/v1/"},"serviceBus":{"maxConcurrentCalls":4,"maxAutoLockRenewalDuration":"00:01:00"}}}`)
	cfg, err = readHostConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := hostConfig{
		Executable: "handler", WorkingDirectory: "w", Arguments: []string{"a"},
		Forwarding: true, Proxying: true, RoutePrefix: "v1",
		FunctionTimeout: 10 * time.Minute, MaxConcurrentCalls: 4, MaxAutoLockRenewal: time.Minute,
		hasCustomHandlerConfig: true,
	}
	if diff := cmp.Diff(want, cfg, cmp.AllowUnexported(hostConfig{})); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
}

func TestExpandSettings(t *testing.T) {
	t.Parallel()
	lookup := envLookup([]string{"A=1", "B=two", "A=3"})
	if got := expandSettings("--x=%A% %B%/%MISSING%!", lookup); got != "--x=3 two/!" {
		t.Errorf("got %q", got)
	}
}

func TestCompileRoute(t *testing.T) {
	t.Parallel()
	tests := []struct {
		tmpl  string
		match []string
		miss  []string
	}{
		{"orders", []string{"/orders", "/ORDERS", "/orders/"}, []string{"/orders/1", "/order"}},
		{"orders/{id?}", []string{"/orders", "/orders/7", "/orders/a%2Fb"}, []string{"/orders/7/8"}},
		{"orders/{id:int}", []string{"/orders/7", "/orders/-7"}, []string{"/orders/x", "/orders"}},
		{"orders/{id:int?}", []string{"/orders", "/orders/7"}, []string{"/orders/x"}},
		{"files/{*path}", []string{"/files", "/files/a/b/c"}, []string{"/file"}},
		{"w/{name}.{ext}", []string{"/w/a.txt"}, []string{"/w/atxt"}},
		{"{id:guid}", []string{"/0f8fad5b-d9cb-469f-a165-70867728950e"}, []string{"/nope"}},
		{"", []string{"", "/"}, []string{"/x"}},
	}
	for _, tt := range tests {
		re, _, err := compileRoute(tt.tmpl)
		if err != nil {
			t.Errorf("compileRoute(%q): %v", tt.tmpl, err)
			continue
		}
		for _, p := range tt.match {
			if !re.MatchString(p) {
				t.Errorf("route %q does not match %q", tt.tmpl, p)
			}
		}
		for _, p := range tt.miss {
			if re.MatchString(p) {
				t.Errorf("route %q matches %q", tt.tmpl, p)
			}
		}
	}
	for _, bad := range []string{"{*rest}/x", "{id?}/x"} {
		if _, _, err := compileRoute(bad); err == nil {
			t.Errorf("compileRoute(%q) accepted", bad)
		}
	}
}

func TestRoutePrecedence(t *testing.T) {
	t.Parallel()
	route := func(name, r string) *function {
		return &function{Name: name, Kind: TriggerHTTP, Trigger: binding{Type: TriggerHTTP, Route: &r}}
	}
	routes, err := buildRoutes([]*function{route("catch", "{*all}"), route("param", "items/{id}"), route("lit", "items/special")})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, r := range routes {
		order = append(order, r.fn.Name)
	}
	if diff := cmp.Diff([]string{"lit", "param", "catch"}, order); diff != "" {
		t.Errorf("precedence (-want +got):\n%s", diff)
	}
}

func TestNextOccurrence(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 15, 10, 2, 30, 500, time.UTC) // a Wednesday
	tests := []struct {
		schedule string
		want     time.Time
	}{
		{"0 */5 * * * *", time.Date(2025, 1, 15, 10, 5, 0, 0, time.UTC)},
		{"*/10 * * * * *", time.Date(2025, 1, 15, 10, 2, 40, 0, time.UTC)},
		{"0 0 3 * * *", time.Date(2025, 1, 16, 3, 0, 0, 0, time.UTC)},
		{"0 30 9 * * 1-5", time.Date(2025, 1, 16, 9, 30, 0, 0, time.UTC)},
		{"0 0 0 1 jan *", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"0 0 12 * * sun", time.Date(2025, 1, 19, 12, 0, 0, 0, time.UTC)},
		{"0 0,15 10 * * *", time.Date(2025, 1, 15, 10, 15, 0, 0, time.UTC)},
		{"00:30:00", now.Add(30 * time.Minute)},
	}
	for _, tt := range tests {
		got, err := nextOccurrence(tt.schedule, now)
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("nextOccurrence(%q) = %v, %v; want %v", tt.schedule, got, err, tt.want)
		}
	}
	for _, bad := range []string{"* * * * *", "61 * * * * *", "x * * * * *", "%SCHEDULE%"} {
		if _, err := nextOccurrence(bad, now); err == nil {
			t.Errorf("nextOccurrence(%q) accepted", bad)
		}
	}
}

func TestCheckReply(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		status   int
		ct, body string
		wantLogs []string
		wantErr  string
	}{
		{"minimal object", 200, "application/json", `{}`, nil, ""},
		{"charset and logs", 200, "application/json; charset=utf-8", `{"Outputs":{},"logs":["a","b"],"ReturnValue":null}`, []string{"a", "b"}, ""},
		{"text/json", 204, "text/json", `{"Logs":null}`, nil, ""},
		{"no content type", 200, "", `{}`, nil, "Content-Type"},
		{"text/plain", 200, "text/plain; charset=utf-8", `{}`, nil, "Content-Type"},
		{"problem+json is not read", 200, "application/problem+json", `{}`, nil, "Content-Type"},
		{"500 keeps logs", 500, "application/json", `{"Logs":["boom"]}`, []string{"boom"}, "500"},
		{"null", 200, "application/json", `null`, nil, "null"},
		{"empty", 200, "application/json", ` `, nil, "empty"},
		{"string", 200, "application/json", `"ok"`, nil, "not a JSON object"},
		{"bad logs", 200, "application/json", `{"Logs":"x"}`, nil, "Logs"},
		{"bad outputs", 200, "application/json", `{"Outputs":[1]}`, nil, "Outputs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs, err := checkReply(tt.status, tt.ct, []byte(tt.body))
			if diff := cmp.Diff(tt.wantLogs, logs); diff != "" {
				t.Errorf("logs (-want +got):\n%s", diff)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("err = %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestDotnetScalarStrings(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		`"2025-01-15T10:00:00.1234567Z"`: "01/15/2025 10:00:00",
		`"2025-01-15T12:00:00+02:00"`:    "01/15/2025 10:00:00",
		`"2025-01-15T10:00:00"`:          "01/15/2025 10:00:00",
		`"2025-01-15"`:                   "2025-01-15",
		`1e3`:                            "1000",
		`0.1`:                            "0.1",
		`1e21`:                           "1E+21",
		`false`:                          "False",
	}
	for in, want := range tests {
		md := newObject()
		if err := promoteBodyProperties(md, `{"v":`+in+`}`); err != nil {
			t.Fatal(err)
		}
		got, _ := md.get("v")
		if string(got) != string(doubleEncoded(want)) {
			t.Errorf("%s promoted as %s, want %s", in, got, doubleEncoded(want))
		}
	}
}

func TestFormatTimeSpan(t *testing.T) {
	t.Parallel()
	if got := formatTimeSpan(26*time.Hour + 3*time.Second + 500*time.Millisecond); got != "1.02:00:03.5000000" {
		t.Errorf("got %q", got)
	}
}
