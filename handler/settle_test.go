package handler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// fakePublisher records outcomes, or fails.
type fakePublisher struct {
	fail bool
	got  []tokens.Outcome
}

func (p *fakePublisher) Publish(_ context.Context, o tokens.Outcome) error {
	if p.fail {
		return errors.New("service bus unavailable")
	}
	p.got = append(p.got, o)
	return nil
}

func (p *fakePublisher) Schedule(context.Context, string, []byte, string, map[string]any, time.Time) error {
	return nil
}

// A message that can never succeed completes only once its Failed result
// is out; if the result cannot be published, Service Bus must keep it.
func TestPermanentFailureCompletesOnlyOncePublished(t *testing.T) {
	t.Parallel()
	for _, fail := range []bool{false, true} {
		pub := &fakePublisher{fail: fail}
		h := New(slog.New(slog.DiscardHandler), nil, pub, Options{Limits: tokens.Limits{DefaultLifetime: time.Hour, MaxLifetime: time.Hour}})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/token-requests", bytes.NewReader(envelope(t, `{"action":"mint"}`, 1))))
		want := http.StatusOK
		if fail {
			want = http.StatusServiceUnavailable
		}
		if rec.Code != want || rec.Header().Get("Content-Type") != "application/json; charset=utf-8" {
			t.Errorf("publisher failing=%v: %d %s", fail, rec.Code, rec.Body)
		}
		if !fail && (len(pub.got) != 1 || pub.got[0].Type != tokens.Failed || pub.got[0].CorrelationID != "m1") {
			t.Errorf("published %+v", pub.got)
		}
		var reply map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &reply); err != nil || reply["Outputs"] == nil {
			t.Errorf("the reply is not the host's JSON object: %s", rec.Body)
		}
	}
}
