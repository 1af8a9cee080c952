package hostsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// hostConfig is what the simulator reads from host.json.
type hostConfig struct {
	Executable       string   // defaultExecutablePath as written
	WorkingDirectory string   // as written
	Arguments        []string // as written, before %SETTING% expansion
	Forwarding       bool     // customHandler.enableForwardingHttpRequest
	Proxying         bool     // customHandler.enableProxyingHttpRequest (wins over Forwarding)
	RoutePrefix      string   // extensions.http.routePrefix, default "api"

	FunctionTimeout        time.Duration // 0 when unset; -1 when "-1" (unlimited)
	MaxConcurrentCalls     int           // 0 when unset
	MaxAutoLockRenewal     time.Duration // 0 when unset
	hasCustomHandlerConfig bool
}

type hostJSON struct {
	CustomHandler *customHandlerJSON `json:"customHandler"`
	HTTPWorker    *customHandlerJSON `json:"httpWorker"` // legacy name; customHandler wins
	// The host reads functionTimeout as a TimeSpan string, e.g. "00:10:00" or "-1".
	FunctionTimeout *string `json:"functionTimeout"`
	Extensions      struct {
		HTTP *struct {
			RoutePrefix *string `json:"routePrefix"`
		} `json:"http"`
		ServiceBus *struct {
			MaxConcurrentCalls         *int    `json:"maxConcurrentCalls"`
			MaxAutoLockRenewalDuration *string `json:"maxAutoLockRenewalDuration"`
		} `json:"serviceBus"`
	} `json:"extensions"`
}

type customHandlerJSON struct {
	Description struct {
		DefaultExecutablePath string   `json:"defaultExecutablePath"`
		WorkingDirectory      string   `json:"workingDirectory"`
		Arguments             []string `json:"arguments"`
	} `json:"description"`
	EnableForwardingHTTPRequest bool `json:"enableForwardingHttpRequest"`
	EnableProxyingHTTPRequest   bool `json:"enableProxyingHttpRequest"`
}

func readHostConfig(appRoot string) (hostConfig, error) {
	raw, err := os.ReadFile(filepath.Join(appRoot, "host.json"))
	if err != nil {
		return hostConfig{}, fmt.Errorf("read host.json: %w", err)
	}
	var hj hostJSON
	if err := json.Unmarshal(raw, &hj); err != nil {
		return hostConfig{}, fmt.Errorf("parse host.json: %w", err)
	}
	cfg := hostConfig{RoutePrefix: "api"}
	ch := hj.CustomHandler
	if ch == nil {
		ch = hj.HTTPWorker
	}
	if ch != nil {
		cfg.hasCustomHandlerConfig = true
		cfg.Executable = ch.Description.DefaultExecutablePath
		cfg.WorkingDirectory = ch.Description.WorkingDirectory
		cfg.Arguments = ch.Description.Arguments
		cfg.Forwarding = ch.EnableForwardingHTTPRequest
		cfg.Proxying = ch.EnableProxyingHTTPRequest
	}
	if hj.FunctionTimeout != nil {
		d, err := parseTimeSpan(*hj.FunctionTimeout)
		if err != nil {
			return hostConfig{}, fmt.Errorf("host.json functionTimeout: %w", err)
		}
		cfg.FunctionTimeout = d
	}
	if hj.Extensions.HTTP != nil && hj.Extensions.HTTP.RoutePrefix != nil {
		cfg.RoutePrefix = strings.Trim(*hj.Extensions.HTTP.RoutePrefix, "/")
	}
	if sb := hj.Extensions.ServiceBus; sb != nil {
		if sb.MaxConcurrentCalls != nil {
			cfg.MaxConcurrentCalls = *sb.MaxConcurrentCalls
		}
		if sb.MaxAutoLockRenewalDuration != nil {
			d, err := parseTimeSpan(*sb.MaxAutoLockRenewalDuration)
			if err != nil {
				return hostConfig{}, fmt.Errorf("host.json extensions.serviceBus.maxAutoLockRenewalDuration: %w", err)
			}
			cfg.MaxAutoLockRenewal = d
		}
	}
	return cfg, nil
}

// parseTimeSpan parses the .NET TimeSpan forms host.json uses: "hh:mm:ss",
// "hh:mm:ss.fff", "d.hh:mm:ss" and "-1" (no limit, returned as -1).
func parseTimeSpan(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "-1" {
		return -1, nil
	}
	m := timeSpanRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a TimeSpan (want hh:mm:ss)", s)
	}
	atoi := func(v string) int64 {
		if v == "" {
			return 0
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	}
	d := time.Duration(atoi(m[1]))*24*time.Hour +
		time.Duration(atoi(m[2]))*time.Hour +
		time.Duration(atoi(m[3]))*time.Minute +
		time.Duration(atoi(m[4]))*time.Second
	if m[5] != "" {
		frac := (m[5] + "000000000")[:9]
		d += time.Duration(atoi(frac))
	}
	return d, nil
}

var timeSpanRE = regexp.MustCompile(`^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,7}))?$`)

// binding is one entry of function.json "bindings".
type binding struct {
	Type             string   `json:"type"`
	Direction        string   `json:"direction"`
	Name             string   `json:"name"`
	DataType         string   `json:"dataType"`
	AuthLevel        string   `json:"authLevel"`
	Methods          []string `json:"methods"`
	Route            *string  `json:"route"`
	QueueName        string   `json:"queueName"`
	TopicName        string   `json:"topicName"`
	SubscriptionName string   `json:"subscriptionName"`
	Connection       string   `json:"connection"`
	Cardinality      string   `json:"cardinality"`
	IsSessions       bool     `json:"isSessionsEnabled"`
	Schedule         string   `json:"schedule"`
	UseMonitor       *bool    `json:"useMonitor"`
}

type functionJSON struct {
	Bindings []binding `json:"bindings"`
	Disabled any       `json:"disabled"`
}

// Trigger kinds, as spelled in function.json.
const (
	TriggerHTTP       = "httpTrigger"
	TriggerServiceBus = "serviceBusTrigger"
	TriggerTimer      = "timerTrigger"
)

// function is one folder with a function.json.
type function struct {
	Name     string
	Bindings []binding
	Trigger  binding // the single trigger binding
	Kind     string  // TriggerHTTP, TriggerServiceBus, TriggerTimer or the raw type
	// HTTP: the function qualifies for forwarding (one httpTrigger in, one http out).
	HTTPInOut bool
}

func readFunctions(appRoot string, settings func(string) (string, bool)) ([]*function, error) {
	paths, err := filepath.Glob(filepath.Join(appRoot, "*", "function.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	var fns []*function
	var errs []error
	for _, p := range paths {
		name := filepath.Base(filepath.Dir(p))
		if strings.HasPrefix(name, ".") {
			continue
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var fj functionJSON
		if err := json.Unmarshal(raw, &fj); err != nil {
			errs = append(errs, fmt.Errorf("parse %s: %w", p, err))
			continue
		}
		if isTrue(fj.Disabled, settings) {
			continue
		}
		if v, ok := settings("AzureWebJobs." + name + ".Disabled"); ok && strings.EqualFold(v, "true") {
			continue
		}
		fn := &function{Name: name, Bindings: fj.Bindings}
		var triggers, ins, outs int
		var httpIn, httpOut bool
		for _, b := range fj.Bindings {
			isTrigger := strings.HasSuffix(strings.ToLower(b.Type), "trigger")
			if isTrigger {
				triggers++
				fn.Trigger = b
			}
			switch strings.ToLower(b.Direction) {
			case "in":
				ins++
				httpIn = httpIn || strings.EqualFold(b.Type, TriggerHTTP)
			case "out":
				outs++
				httpOut = httpOut || strings.EqualFold(b.Type, "http")
			}
		}
		if triggers != 1 {
			errs = append(errs, fmt.Errorf("%s: want exactly one trigger binding, have %d", p, triggers))
			continue
		}
		switch {
		case strings.EqualFold(fn.Trigger.Type, TriggerHTTP):
			fn.Kind = TriggerHTTP
		case strings.EqualFold(fn.Trigger.Type, TriggerServiceBus):
			fn.Kind = TriggerServiceBus
		case strings.EqualFold(fn.Trigger.Type, TriggerTimer):
			fn.Kind = TriggerTimer
		default:
			fn.Kind = fn.Trigger.Type
		}
		// FunctionMetadataExtensions.IsHttpInAndOutFunction.
		fn.HTTPInOut = ins == 1 && outs == 1 && httpIn && httpOut
		// The host resolves %SETTING% in these binding properties.
		fn.Trigger.QueueName = expandSettings(fn.Trigger.QueueName, settings)
		fn.Trigger.TopicName = expandSettings(fn.Trigger.TopicName, settings)
		fn.Trigger.SubscriptionName = expandSettings(fn.Trigger.SubscriptionName, settings)
		fn.Trigger.Schedule = expandSettings(fn.Trigger.Schedule, settings)
		fns = append(fns, fn)
	}
	return fns, errors.Join(errs...)
}

func isTrue(v any, settings func(string) (string, bool)) bool {
	switch v := v.(type) {
	case bool:
		return v
	case string:
		if s, ok := settings(v); ok {
			return strings.EqualFold(s, "true")
		}
		return strings.EqualFold(v, "true")
	}
	return false
}

var settingRE = regexp.MustCompile(`%([^%\s]+)%`)

// expandSettings replaces %NAME% with the app setting NAME; an unresolved
// setting becomes "" (DefaultWorkerProcessFactory.SanitizeExpandedArgument).
func expandSettings(s string, settings func(string) (string, bool)) string {
	return settingRE.ReplaceAllStringFunc(s, func(m string) string {
		v, _ := settings(m[1 : len(m)-1])
		return v
	})
}

// envLookup returns a case-sensitive lookup over env (KEY=value, last wins).
func envLookup(env []string) func(string) (string, bool) {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}
