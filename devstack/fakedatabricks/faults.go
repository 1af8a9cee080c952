package fakedatabricks

import (
	"math/rand/v2"
	"time"
)

// Operations, as used by InjectFault and Calls.
const (
	OpCreate  = "create"  // POST /api/2.0/token/create
	OpList    = "list"    // GET /api/2.0/token/list
	OpDelete  = "delete"  // POST /api/2.0/token/delete
	OpConf    = "conf"    // GET or PATCH /api/2.0/workspace-conf
	OpMe      = "me"      // GET /api/2.0/preview/scim/v2/Me
	OpUnknown = "unknown" // anything else (404 ENDPOINT_NOT_FOUND)
	// OpAny queues a fault for whichever operation comes next.
	OpAny = "any"
)

// Fault is something InjectFault makes the workspace do instead of (or
// before) answering normally. The kinds are the types below.
type Fault interface{ faultName() string }

// Status429 answers 429 with {"error_code":"REQUEST_LIMIT_EXCEEDED",…}.
// RetryAfter, when not empty, is sent as the Retry-After header verbatim
// (seconds or an HTTP date); empty means no header, as Databricks sometimes does.
type Status429 struct{ RetryAfter string }

// Status503 answers 503 with {"error_code":"TEMPORARILY_UNAVAILABLE",…}.
type Status503 struct{ RetryAfter string }

// Status500 answers 500 with {"error_code":"INTERNAL_ERROR",…}.
type Status500 struct{}

// HTML403 answers 403 with the gateway's HTML page "Error 403 Invalid access token.".
type HTML403 struct{}

// Delay waits D (or until the client goes away), then answers normally.
type Delay struct{ D time.Duration }

// Slow keeps working D before it performs the operation and answers, even
// after the client went away: a server that had read the whole request
// finishes it whether or not anyone waits for the answer. A create whose
// sender is killed meanwhile still makes its token, D after it was sent.
type Slow struct{ D time.Duration }

// PlainText answers Status with a text/plain body, e.g. "TEMPORARILY_UNAVAILABLE: try later".
type PlainText struct {
	Status int
	Body   string
}

// EchoCredentials answers Status (default 400) with a Databricks error whose
// message quotes the request's Authorization and management-token headers:
// what a gateway or a misbehaving workspace that echoes its request in an
// error does. A client that shows or logs the message hands both tokens on.
type EchoCredentials struct{ Status int }

// DropAfterCreate performs the operation (for create: the token exists and
// is live) and then closes the connection without any response: an
// ambiguous failure. If the operation fails, its error is answered instead.
type DropAfterCreate struct{}

// Drop closes the connection without performing the operation or answering.
type Drop struct{}

// RedirectBody is the text/plain body of a Redirect answer, recognisable so
// that tests can check a client never shows it.
const RedirectBody = "REDIRECT-BODY: this workspace has moved, follow the Location"

// Redirect answers Status (default 307 Temporary Redirect) with a Location
// header and RedirectBody instead of performing the operation: what a
// compromised or misconfigured front door would do. A client that followed
// it would re-send the request, management token included, to Location.
type Redirect struct {
	Location string
	Status   int
}

func (Status429) faultName() string       { return "429" }
func (Status503) faultName() string       { return "503" }
func (Status500) faultName() string       { return "500" }
func (HTML403) faultName() string         { return "html403" }
func (Delay) faultName() string           { return "delay" }
func (Slow) faultName() string            { return "slow" }
func (PlainText) faultName() string       { return "plaintext" }
func (DropAfterCreate) faultName() string { return "dropAfter" }
func (Drop) faultName() string            { return "drop" }
func (Redirect) faultName() string        { return "redirect" }
func (EchoCredentials) faultName() string { return "echo" }

// FaultRates are per-call probabilities (0…1, summing to at most 1) for
// SetRandomFaults. Queued faults (InjectFault) take precedence.
type FaultRates struct {
	Status429, Status503, Status500, HTML403 float64
	DropAfterCreate, Drop, Delay             float64
	// RetryAfter is sent with random 429 and 503 faults ("" = no header).
	RetryAfter string
	// MaxDelay bounds random Delay faults (uniform in [0, MaxDelay]); default 20ms.
	MaxDelay time.Duration
	// Ops restricts random faults to these operations; empty = all.
	Ops []string
}

type randomFaults struct {
	rng   *rand.Rand
	rates FaultRates
}

func (r *randomFaults) pick(op string) Fault {
	if len(r.rates.Ops) > 0 {
		found := false
		for _, o := range r.rates.Ops {
			found = found || o == op
		}
		if !found {
			return nil
		}
	}
	x := r.rng.Float64()
	maxDelay := r.rates.MaxDelay
	if maxDelay <= 0 {
		maxDelay = 20 * time.Millisecond
	}
	for _, c := range []struct {
		p float64
		f func() Fault
	}{
		{r.rates.Status429, func() Fault { return Status429{RetryAfter: r.rates.RetryAfter} }},
		{r.rates.Status503, func() Fault { return Status503{RetryAfter: r.rates.RetryAfter} }},
		{r.rates.Status500, func() Fault { return Status500{} }},
		{r.rates.HTML403, func() Fault { return HTML403{} }},
		{r.rates.DropAfterCreate, func() Fault { return DropAfterCreate{} }},
		{r.rates.Drop, func() Fault { return Drop{} }},
		{r.rates.Delay, func() Fault { return Delay{D: time.Duration(r.rng.Int64N(int64(maxDelay) + 1))} }},
	} {
		if x < c.p {
			return c.f()
		}
		x -= c.p
	}
	return nil
}
