package handler

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// keyVaultOptions: Key Vault delivery, and a queue whose third delivery is
// its last.
func keyVaultOptions() Options {
	opts := baseOptions()
	opts.Limits.KeyVault = true
	opts.MaxDeliveryCount = 3
	return opts
}

func createCommand(extra string) string {
	return `{"action":"create","workspaceResourceId":"` + surfaceWS + `"` + extra + `}`
}

// ignoreErrCause compares published errors by what consumers read.
var ignoreErrCause = cmpopts.IgnoreFields(tokens.Error{}, "Err")

// TestQueueBadEnvelope: what the host would never send completes with a
// Failed result (redelivery cannot fix it), each under an id of its own.
func TestQueueBadEnvelope(t *testing.T) {
	t.Parallel()
	huge := createCommand(`,"comment":"` + strings.Repeat("x", MaxBody) + `"`)
	tests := []struct {
		name     string
		envelope []byte
		code     tokens.Code
		wantID   string // "" : derived from the invocation id
	}{
		{"not JSON", []byte(`<xml/>`), tokens.CodeInvalidRequest, ""},
		{"no message in Data", []byte(`{"Data":{"a":1,"b":2},"Metadata":{}}`), tokens.CodeInvalidRequest, ""},
		{"a message body over 64 KiB", envelope(t, huge, 1), tokens.CodeRequestTooLarge, "m1"},
	}
	for _, path := range []string{"/token-requests", "/workspace-events"} {
		for _, tt := range tests {
			t.Run(path+" "+tt.name, func(t *testing.T) {
				t.Parallel()
				r := newRig(t, &stubService{}, keyVaultOptions())
				var ids []string
				for _, inv := range []string{"inv-a", "inv-b"} {
					rec := r.do(http.MethodPost, path, tt.envelope, http.Header{"X-Azure-Functions-Invocationid": {inv}}, false)
					if rec.Code != http.StatusOK {
						t.Errorf("%d %s; want 200 (complete)", rec.Code, rec.Body)
					}
				}
				for _, o := range r.pub.outcomes() {
					if o.Type != tokens.Failed || o.Err.Code != tt.code {
						t.Errorf("published %s %s, want Failed %s", o.Type, o.Err.Code, tt.code)
					}
					ids = append(ids, o.RequestID)
				}
				if len(ids) != 2 {
					t.Fatalf("published %d results, want 2", len(ids))
				}
				if tt.wantID != "" && (ids[0] != tt.wantID || ids[1] != tt.wantID) {
					t.Errorf("request ids %v, want %s", ids, tt.wantID)
				}
				if tt.wantID == "" && (ids[0] == ids[1] || !strings.HasPrefix(ids[0], "inv-")) {
					t.Errorf("request ids %v: two broken envelopes must not share a result id", ids)
				}
				if r.svc.calls() != 0 {
					t.Errorf("the service was asked %d times", r.svc.calls())
				}
				// Completing it unpublished would lose it: its Failed
				// result is what tells the sender.
				r.pub.publishErr = errors.New("service bus is down")
				if rec := r.do(http.MethodPost, path, tt.envelope, nil, false); rec.Code != http.StatusServiceUnavailable {
					t.Errorf("with results unpublishable: %d %s; want 503 (redeliver)", rec.Code, rec.Body)
				}
			})
		}
	}
}

// TestQueueSettlement: a failure that can never succeed publishes Failed
// and completes; a transient one fails the invocation so Service Bus
// redelivers, except on the last delivery, which publishes Failed first;
// a Failed result that cannot be published keeps the message.
func TestQueueSettlement(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		err          *tokens.Error
		delivery     int
		publishFails bool
		status       int
		published    bool
		log          string
	}{
		{"permanent", failWith(tokens.CodeWorkspaceNotFound, "no such workspace", 0), 1, false, 200, true, "failed permanently: WorkspaceNotFound: no such workspace"},
		{"not authorized", failWith(tokens.CodeNotAuthorized, "not the queue's", 0), 2, false, 200, true, "failed permanently: NotAuthorized: not the queue's"},
		{"nowhere to deliver the value", failWith(tokens.CodeDeliveryNotConfigured, "set KEY_VAULT_URI", 0), 1, false, 200, true, "failed permanently: DeliveryNotConfigured: set KEY_VAULT_URI"},
		{"permanent, unpublishable", failWith(tokens.CodeUpstreamError, "refused", 0), 1, true, 503, false, "failed, and the Failed result could not be published; Service Bus will redeliver"},
		{"transient", failWith(tokens.CodeUpstreamUnavailable, "throttled", time.Second), 1, false, 503, false, "failed, Service Bus will redeliver (delivery 1 of 3): UpstreamUnavailable: throttled"},
		{"internal", failWith(tokens.CodeInternal, "internal error", 0), 2, false, 500, false, "failed, Service Bus will redeliver (delivery 2 of 3): InternalError: internal error"},
		{"transient, last delivery", failWith(tokens.CodeUpstreamUnavailable, "throttled", time.Second), 3, false, 503, true, "failed on the last delivery (3 of 3), Failed result published: UpstreamUnavailable: throttled"},
		{"transient, last delivery, unpublishable", failWith(tokens.CodeUpstreamUnavailable, "throttled", time.Second), 3, true, 503, false, "failed, and the Failed result could not be published; Service Bus will redeliver"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, createAnswering(tokens.CreateResult{}, tt.err), keyVaultOptions())
			if tt.publishFails {
				r.pub.publishErr = errors.New("service bus is down")
			}
			status, logs := r.invoke("/token-requests", envelope(t, createCommand(""), tt.delivery))
			if status != tt.status || len(logs) != 1 || logs[0] != tt.log {
				t.Errorf("%d %q, want %d %q", status, logs, tt.status, tt.log)
			}
			var want []tokens.Outcome
			if tt.published {
				want = []tokens.Outcome{{Type: tokens.Failed, RequestID: "m1", Workspace: surfaceWS, CorrelationID: "m1", RequestedBy: "queue", Err: tt.err}}
			}
			r.checkPublished(want, ignoreErrCause)
		})
	}
}

// TestQueueCreate: what the service is asked for a queued create, and the
// Created result that completes it.
func TestQueueCreate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		body      string
		delivery  int
		inline    bool
		wantReq   string // request id the service gets
		wantGiven bool
	}{
		{"first delivery, named by its MessageId", createCommand(""), 1, false, "m1", false},
		{"a redelivery may find the first attempt's token", createCommand(""), 2, false, "m1", true},
		{"the body's requestId", createCommand(`,"requestId":"cmd-7"`), 1, false, "cmd-7", true},
		{"inline: the value travels in the result", createCommand(""), 1, true, "m1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := keyVaultOptions()
			value := ""
			if tt.inline {
				opts.Limits.KeyVault, value = false, secretValue
			}
			res := issued(t, true, value)
			if !tt.inline {
				res.Record.SecretURI = "https://v.vault.azure.net/secrets/s/0123"
			}
			r := newRig(t, createAnswering(res, nil), opts)
			status, logs := r.invoke("/token-requests", envelope(t, tt.body, tt.delivery))
			if status != 200 || len(logs) != 1 || logs[0] != "token tok-1 ready for request "+tt.wantReq {
				t.Errorf("%d %q", status, logs)
			}
			req, o := r.svc.creates[0], r.svc.createOps[0]
			if req.RequestID != tt.wantReq || req.RequestIDGiven != tt.wantGiven || o.ReissueUndelivered != (tt.delivery > 1) {
				t.Errorf("asked for request %q (given %v, reissue %v); want %q (given %v, reissue %v)",
					req.RequestID, req.RequestIDGiven, o.ReissueUndelivered, tt.wantReq, tt.wantGiven, tt.delivery > 1)
			}
			if by := r.svc.callers[0]; by == nil || !by.IsQueue() {
				t.Errorf("the service was told the caller is %v, want the queue", by)
			}
			want := []tokens.Outcome{{Type: tokens.Created, RequestID: tt.wantReq, Workspace: surfaceWS, TokenID: "tok-1", CorrelationID: "m1", RequestedBy: "queue", Record: &res.Record}}
			r.checkPublished(want, secretsByValue)
		})
	}
}

// TestQueueCreateRefusals: commands that cannot be carried out complete
// with a Failed result, before the service is asked.
func TestQueueCreateRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts Options
		body string
		want *tokens.Error
	}{
		{"an unknown action", keyVaultOptions(), `{"action":"mint"}`, tokens.FieldError(tokens.CodeInvalidRequest, "action", `action "mint" is not one of create, revoke`)},
		{"no action", keyVaultOptions(), `{"workspaceResourceId":"` + surfaceWS + `"}`, tokens.FieldError(tokens.CodeInvalidRequest, "action", `action is required ("create" or "revoke")`)},
		{"not JSON", keyVaultOptions(), `create a token please`, tokens.FieldError(tokens.CodeInvalidRequest, "body", "the message body is not a JSON object")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, &stubService{}, tt.opts)
			if status, _ := r.invoke("/token-requests", envelope(t, tt.body, 1)); status != 200 {
				t.Errorf("status %d, want 200 (complete)", status)
			}
			out := r.pub.outcomes()
			if len(out) != 1 || out[0].Type != tokens.Failed || out[0].CorrelationID != "m1" {
				t.Fatalf("published %+v", out)
			}
			if d := cmp.Diff(tt.want, out[0].Err, ignoreErrCause); d != "" {
				t.Errorf("Failed result (-want +got):\n%s", d)
			}
		})
	}
}

func TestQueueRevoke(t *testing.T) {
	t.Parallel()
	body := `{"action":"revoke","workspaceResourceId":"` + surfaceWS + `","tokenId":"tok-1"}`
	res := tokens.RevokeResult{RequestID: "m1", Workspace: workspaceID(t), TokenID: "tok-1", Status: tokens.StatusNotFound}
	tests := []struct {
		name         string
		err          error
		publishFails bool
		status       int
		log          string
		want         []tokens.Outcome
	}{
		{"revoked (or not found): a result either way", nil, false, 200, "token tok-1 notFound",
			[]tokens.Outcome{{Type: tokens.Revoked, RequestID: "m1", Workspace: surfaceWS, TokenID: "tok-1", CorrelationID: "m1", RequestedBy: "queue", Revoke: &res}}},
		{"result unpublishable", nil, true, 503, "done, but the result could not be published; Service Bus will redeliver", nil},
		{"refused", failWith(tokens.CodeWorkspaceNotAllowed, "not allowed", 0), false, 200, "failed permanently: WorkspaceNotAllowed: not allowed",
			[]tokens.Outcome{{Type: tokens.Failed, RequestID: "m1", Workspace: surfaceWS, CorrelationID: "m1", RequestedBy: "queue", Err: failWith(tokens.CodeWorkspaceNotAllowed, "not allowed", 0)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, &stubService{revoke: func(tokens.RevokeRequest) (tokens.RevokeResult, error) { return res, tt.err }}, keyVaultOptions())
			if tt.publishFails {
				r.pub.publishErr = errors.New("service bus is down")
			}
			status, logs := r.invoke("/token-requests", envelope(t, body, 1))
			if status != tt.status || len(logs) != 1 || logs[0] != tt.log {
				t.Errorf("%d %q, want %d %q", status, logs, tt.status, tt.log)
			}
			if got := r.svc.revokes[0]; got.TokenID != "tok-1" || !got.Workspace.Equal(workspaceID(t)) || got.RequestID != "m1" {
				t.Errorf("the service was asked %+v", got)
			}
			r.checkPublished(tt.want, ignoreErrCause)
		})
	}
}

// TestNotReadyIsRescheduled: a workspace still being provisioned is waited
// for with a copy of the message scheduled on its own queue, each later
// than the last, until the attempts run out.
func TestNotReadyIsRescheduled(t *testing.T) {
	t.Parallel()
	notReady := failWith(tokens.CodeWorkspaceNotReady, "workspace dbw is not ready yet (provisioning state Accepted)", time.Minute)
	event := workspaceWrite("e1")
	revoke := `{"action":"revoke","workspaceResourceId":"` + surfaceWS + `","tokenId":"t1"}`
	tests := []struct {
		name, path, body, props string
		scheduleFails           bool
		status                  int
		want                    []scheduledMessage
		wantFailed              bool
	}{
		{"first wait", "/token-requests", createCommand(""), `{}`, false, 200,
			[]scheduledMessage{{Queue: "token-requests", MessageID: "m1/retry-1", Body: createCommand(""), At: testNow.Add(30 * time.Second),
				Props: map[string]any{"dtb-attempt": int64(1), "dtb-request-id": "m1"}}}, false},
		{"fourth wait, the sender's properties kept", "/token-requests", createCommand(""), `{"dtb-attempt":3,"dtb-request-id":"m0","tenant":"a"}`, false, 200,
			[]scheduledMessage{{Queue: "token-requests", MessageID: "m0/retry-4", Body: createCommand(""), At: testNow.Add(240 * time.Second),
				Props: map[string]any{"dtb-attempt": int64(4), "dtb-request-id": "m0", "tenant": "a"}}}, false},
		{"an event waits on its own queue", "/workspace-events", event, `{}`, false, 200,
			[]scheduledMessage{{Queue: "workspace-events", MessageID: "evt-e1/retry-1", Body: event, At: testNow.Add(30 * time.Second),
				Props: map[string]any{"dtb-attempt": int64(1), "dtb-request-id": "evt-e1"}}}, false},
		{"a revoke waits too", "/token-requests", revoke, `{}`, false, 200,
			[]scheduledMessage{{Queue: "token-requests", MessageID: "m1/retry-1", Body: revoke, At: testNow.Add(30 * time.Second),
				Props: map[string]any{"dtb-attempt": int64(1), "dtb-request-id": "m1"}}}, false},
		{"the last attempt gives up", "/token-requests", createCommand(""), `{"dtb-attempt":9}`, false, 200, nil, true},
		{"the copy cannot be scheduled", "/token-requests", createCommand(""), `{}`, true, 503, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fail := func() (tokens.CreateResult, error) { return tokens.CreateResult{}, notReady }
			r := newRig(t, &stubService{
				create: func(tokens.CreateRequest, tokens.CreateOptions) (tokens.CreateResult, error) { return fail() },
				ensure: func(tokens.WorkspaceID, tokens.EnsureOptions) (tokens.CreateResult, error) { return fail() },
				revoke: func(tokens.RevokeRequest) (tokens.RevokeResult, error) { return tokens.RevokeResult{}, notReady },
			}, keyVaultOptions())
			if tt.scheduleFails {
				r.pub.scheduleErr = errors.New("service bus is down")
			}
			status, logs := r.invoke(tt.path, envelopeWithProperties(t, tt.body, tt.props))
			if status != tt.status {
				t.Errorf("status %d, want %d: %q", status, tt.status, logs)
			}
			if d := cmp.Diff(tt.want, r.pub.scheduled); d != "" {
				t.Errorf("scheduled (-want +got):\n%s", d)
			}
			out := r.pub.outcomes()
			if tt.wantFailed != (len(out) == 1) {
				t.Fatalf("published %+v", out)
			}
			if tt.wantFailed && (out[0].Type != tokens.Failed || out[0].Err.Code != tokens.CodeWorkspaceNotReady ||
				out[0].Err.Message != notReady.Message+"; gave up after 10 attempts") {
				t.Errorf("published %+v", out[0].Err)
			}
		})
	}
}

// workspaceWrite is the Event Grid event of a workspace written.
func workspaceWrite(id string) string {
	return `{"id":"` + id + `","eventType":"Microsoft.Resources.ResourceWriteSuccess","subject":"` + surfaceWS + `",` +
		`"data":{"resourceUri":"` + surfaceWS + `","operationName":"Microsoft.Databricks/workspaces/write","status":"Succeeded"},` +
		`"dataVersion":"2","metadataVersion":"1","eventTime":"2026-11-28T10:00:00Z"}`
}

func TestWorkspaceEvents(t *testing.T) {
	t.Parallel()
	other := strings.Replace(workspaceWrite("e2"), "Microsoft.Databricks/workspaces/write", "Microsoft.Storage/storageAccounts/write", 1)
	notWorkspace := strings.ReplaceAll(workspaceWrite("e3"), surfaceWS, "/subscriptions/x/resourceGroups/rg")
	tests := []struct {
		name      string
		opts      Options
		body      string
		result    tokens.CreateResult
		log       string
		wantAsked bool
		want      []tokens.Outcome // Err compared without its cause
	}{
		{"a workspace written: a token issued", keyVaultOptions(), workspaceWrite("e1"), issued(t, true, ""), "issued token tok-1 for workspace event e1", true,
			[]tokens.Outcome{{Type: tokens.Created, RequestID: "evt-e1", Workspace: surfaceWS, TokenID: "tok-1", CorrelationID: "m1", RequestedBy: "queue"}}},
		{"it already has a live token", keyVaultOptions(), workspaceWrite("e1"), issued(t, false, ""), "workspace already has a live managed token", true, nil},
		{"another resource's event", keyVaultOptions(), other, tokens.CreateResult{}, "ignored event e2 (Microsoft.Resources.ResourceWriteSuccess)", false, nil},
		{"not an event", keyVaultOptions(), `{"hello":"world"}`, tokens.CreateResult{}, "failed permanently: InvalidRequest: the message is not an Event Grid or CloudEvents 1.0 event", false,
			[]tokens.Outcome{{Type: tokens.Failed, RequestID: "m1", CorrelationID: "m1", RequestedBy: "queue",
				Err: &tokens.Error{Code: tokens.CodeInvalidRequest, Message: "the message is not an Event Grid or CloudEvents 1.0 event"}}}},
		{"not a workspace", keyVaultOptions(), notWorkspace, tokens.CreateResult{}, "", false,
			[]tokens.Outcome{{Type: tokens.Failed, RequestID: "evt-e3", CorrelationID: "m1", RequestedBy: "queue",
				Err: &tokens.Error{Code: tokens.CodeInvalidRequest, Target: "data.resourceUri",
					Message: "the event's resource is not a Databricks workspace id: must look like /subscriptions/<subscription id>/resourceGroups/<group>/providers/Microsoft.Databricks/workspaces/<name>"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, &stubService{}, tt.opts)
			if tt.wantAsked {
				r.svc.ensure = func(tokens.WorkspaceID, tokens.EnsureOptions) (tokens.CreateResult, error) { return tt.result, nil }
			}
			status, logs := r.invoke("/workspace-events", envelope(t, tt.body, 1))
			if status != 200 || (tt.log != "" && (len(logs) != 1 || logs[0] != tt.log)) {
				t.Errorf("%d %q, want 200 %q", status, logs, tt.log)
			}
			if tt.wantAsked {
				want := tokens.EnsureOptions{RequestID: "evt-e1", Lifetime: 24 * time.Hour, RotateBefore: 7 * 24 * time.Hour}
				if d := cmp.Diff([]tokens.EnsureOptions{want}, r.svc.ensures); d != "" {
					t.Errorf("EnsureLive options (-want +got):\n%s", d)
				}
			}
			r.checkPublished(tt.want, ignoreErrCause, cmpopts.IgnoreFields(tokens.Outcome{}, "Record"))
		})
	}
}

// TestUnpublishedCreatedResult: a token in Key Vault whose Created result
// cannot be published is kept (the redelivery finds it in the vault); one
// whose value travelled only in that result is revoked at once.
func TestUnpublishedCreatedResult(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, path, body string
		inline           bool
		log              string
	}{
		{"queued create, Key Vault", "/token-requests", createCommand(""), false, "done, but the result could not be published; Service Bus will redeliver"},
		{"workspace event, Key Vault", "/workspace-events", workspaceWrite("e1"), false, "done, but the result could not be published; Service Bus will redeliver"},
		{"workspace event, inline", "/workspace-events", workspaceWrite("e1"), true, "could not publish the result that carried the token, so the token was revoked; Service Bus will redeliver"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts, value := keyVaultOptions(), ""
			if tt.inline {
				opts.Limits.KeyVault, value = false, secretValue
			}
			res := issued(t, true, value)
			r := newRig(t, &stubService{
				create: func(tokens.CreateRequest, tokens.CreateOptions) (tokens.CreateResult, error) { return res, nil },
				ensure: func(tokens.WorkspaceID, tokens.EnsureOptions) (tokens.CreateResult, error) { return res, nil },
			}, opts)
			r.pub.publishErr = errors.New("service bus is down")
			status, logs := r.invoke(tt.path, envelope(t, tt.body, 3))
			if status != http.StatusServiceUnavailable || len(logs) != 1 || logs[0] != tt.log {
				t.Errorf("%d %q, want 503 %q", status, logs, tt.log)
			}
			if n := len(r.svc.withdrawn); (n == 1) != tt.inline || n > 1 {
				t.Errorf("withdrew %d tokens", n)
			}
		})
	}
}

// TestRescheduledEventKeepsItsRequestID: a workspace event's copy,
// rescheduled while the workspace was not ready (MessageId
// evt-e1/retry-1), runs under the event's request id, evt-e1, whatever its
// properties say.
func TestRescheduledEventKeepsItsRequestID(t *testing.T) {
	t.Parallel()
	for _, props := range []string{`{"dtb-attempt":1,"dtb-request-id":"evt-e1"}`, `{"dtb-request-id":"someone-else"}`} {
		var got []string
		r := newRig(t, &stubService{ensure: func(_ tokens.WorkspaceID, o tokens.EnsureOptions) (tokens.CreateResult, error) {
			got = append(got, o.RequestID)
			return tokens.CreateResult{}, nil
		}}, keyVaultOptions())
		var inv map[string]any
		if err := json.Unmarshal(envelopeWithProperties(t, workspaceWrite("e1"), props), &inv); err != nil {
			t.Fatal(err)
		}
		inv["Metadata"].(map[string]any)["MessageId"] = `"evt-e1/retry-1"`
		b, _ := json.Marshal(inv)
		if status, logs := r.invoke("/workspace-events", b); status != 200 || len(got) != 1 || got[0] != "evt-e1" {
			t.Errorf("properties %s: %d %q; ran under request id %q, want evt-e1", props, status, logs, got)
		}
	}
}
