package hostsim

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/kit"
)

// InvokeTimer invokes a timerTrigger function once, as its schedule would:
// it POSTs a TimerInfo envelope to /<function> and waits for the reply. The
// returned error is non-nil when the function is unknown or the invocation
// failed (then it is also the Invocation's Err).
func (h *Host) InvokeTimer(ctx context.Context, function string, pastDue bool) (Invocation, error) {
	fn, err := h.function(function, TriggerTimer)
	if err != nil {
		return Invocation{}, err
	}
	if h.stopping() {
		return Invocation{}, errClosed
	}
	now := time.Now()
	h.mu.Lock()
	last, ok := h.lastTimer[fn.Name]
	h.lastTimer[fn.Name] = now
	h.mu.Unlock()
	if !ok {
		last = now
	}
	useMonitor := fn.Trigger.UseMonitor == nil || *fn.Trigger.UseMonitor
	inv := Invocation{ID: kit.GUID(), Function: fn.Name, Trigger: TriggerTimer, Start: now}
	inv.Request = BuildTimerEnvelope(fn.Trigger.Name, fn.Name, fn.Trigger.Schedule, useMonitor, pastDue, last, now)
	h.logf("hostsim: Executing 'Functions.%s' (Reason='Timer fired at %s', Id=%s)", fn.Name, now.UTC().Format(time.RFC3339), inv.ID)

	h.beginInvocation()
	err = h.runInvocation(ctx, &inv, func(ctx context.Context, w *worker) error {
		return h.postEnvelope(ctx, w, fn, &inv, inv.Request)
	})
	inv.Duration = time.Since(inv.Start)
	inv.Err = err
	h.endInvocation(inv)
	if err != nil {
		return inv, fmt.Errorf("hostsim: timer function %s failed: %w", fn.Name, err)
	}
	return inv, nil
}

// BuildTimerEnvelope returns the envelope the host POSTs for a timer trigger
// (spec §5): Data.<binding> is a TimerInfo object (not double-encoded),
// ScheduleStatus is null when useMonitor is false, and Metadata holds sys
// only. Next is computed from the NCRONTAB or TimeSpan schedule when it
// parses, else it is now plus the time since last.
func BuildTimerEnvelope(bindingName, functionName, schedule string, useMonitor, pastDue bool, last, now time.Time) []byte {
	ti := newObject()
	ti.set("Schedule", []byte(`{"AdjustForDST":true}`))
	if useMonitor {
		next, err := nextOccurrence(schedule, now)
		if err != nil {
			next = now.Add(now.Sub(last))
		}
		st := newObject()
		st.set("Last", jsonString(last.UTC().Truncate(time.Second).Format(layoutDateTimeOffset)))
		st.set("Next", jsonString(next.UTC().Truncate(time.Second).Format(layoutDateTimeOffset)))
		st.set("LastUpdated", jsonString(now.UTC().Truncate(time.Second).Format(layoutDateTimeOffset)))
		ti.set("ScheduleStatus", st.bytes())
	} else {
		ti.set("ScheduleStatus", []byte("null"))
	}
	ti.set("IsPastDue", []byte(strconv.FormatBool(pastDue)))

	data := newObject()
	data.set(bindingName, ti.bytes())
	md := newObject()
	md.set("sys", sysObject(functionName, now, kit.GUID()))
	env := newObject()
	env.set("Data", data.bytes())
	env.set("Metadata", md.bytes())
	return env.bytes()
}

// nextOccurrence returns the first time after now matching schedule, a
// six-field NCRONTAB expression ("{second} {minute} {hour} {day} {month}
// {day-of-week}", UTC) or a TimeSpan ("00:05:00", every interval).
func nextOccurrence(schedule string, now time.Time) (time.Time, error) {
	schedule = strings.TrimSpace(schedule)
	if d, err := parseTimeSpan(schedule); err == nil && d > 0 {
		return now.Add(d), nil
	}
	fields := strings.Fields(schedule)
	if len(fields) != 6 {
		return time.Time{}, fmt.Errorf("schedule %q: want 6 NCRONTAB fields", schedule)
	}
	specs := []struct {
		lo, hi int
		names  []string
	}{
		{0, 59, nil}, {0, 59, nil}, {0, 23, nil}, {1, 31, nil},
		{1, 12, []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}},
		{0, 6, []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}},
	}
	var sets [6][]bool
	for i, f := range fields {
		s, err := parseCronField(f, specs[i].lo, specs[i].hi, specs[i].names)
		if err != nil {
			return time.Time{}, fmt.Errorf("schedule %q field %d: %w", schedule, i+1, err)
		}
		sets[i] = s
	}
	t := now.UTC().Truncate(time.Second).Add(time.Second)
	limit := t.AddDate(5, 0, 0)
	for t.Before(limit) {
		switch {
		case !sets[4][int(t.Month())]:
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
		case !sets[3][t.Day()] || !sets[5][int(t.Weekday())]:
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC)
		case !sets[2][t.Hour()]:
			t = t.Truncate(time.Hour).Add(time.Hour)
		case !sets[1][t.Minute()]:
			t = t.Truncate(time.Minute).Add(time.Minute)
		case !sets[0][t.Second()]:
			t = t.Add(time.Second)
		default:
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("schedule %q never fires", schedule)
}

func parseCronField(f string, lo, hi int, names []string) ([]bool, error) {
	set := make([]bool, hi+2)
	value := func(s string) (int, error) {
		for i, n := range names {
			if strings.EqualFold(s, n) {
				return lo + i, nil
			}
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return 0, fmt.Errorf("bad value %q", s)
		}
		if hi == 6 && n == 7 { // Sunday as 7
			n = 0
		}
		if n < lo || n > hi {
			return 0, fmt.Errorf("value %d out of range %d-%d", n, lo, hi)
		}
		return n, nil
	}
	for _, part := range strings.Split(f, ",") {
		rng, stepStr, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepStr)
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("bad step %q", stepStr)
			}
			step = n
		}
		a, b := lo, hi
		switch {
		case rng == "*" || rng == "?":
		case strings.Contains(rng, "-"):
			x, y, _ := strings.Cut(rng, "-")
			var err error
			if a, err = value(x); err != nil {
				return nil, err
			}
			if b, err = value(y); err != nil {
				return nil, err
			}
		default:
			v, err := value(rng)
			if err != nil {
				return nil, err
			}
			a, b = v, v
			if hasStep {
				b = hi
			}
		}
		for v := a; v <= b; v += step {
			set[v] = true
		}
	}
	return set, nil
}
