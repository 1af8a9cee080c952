package hostsim_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/contoso/databricks-token-broker/devstack/hostsim"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// specExample35 is spec §3.5, "What a current host (SB ext 5.x) should send".
const specExample35 = `{
  "Data": { "sbMsg": "\"{\\\"orderId\\\":7}\"" },
  "Metadata": {
    "DeliveryCount": "1",
    "LockToken": "\"b6a2f0f4-2b1e-4a53-9d0e-7d1f0c7a1d11\"",
    "ExpiresAtUtc": "9999-12-31T23:59:59",
    "ExpiresAt": "9999-12-31T23:59:59+00:00",
    "EnqueuedTimeUtc": "2025-01-15T10:00:00",
    "EnqueuedTime": "2025-01-15T10:00:00+00:00",
    "MessageId": "\"2c1f6a0e9b1d4a8f8f0e3c5d7a9b1c2d\"",
    "ContentType": "\"application/json\"",
    "SequenceNumber": "42",
    "ApplicationProperties": { "tenant": "a" },
    "UserProperties": { "tenant": "a" },
    "orderId": "\"7\"",
    "sys": { "MethodName": "ProcessOrders", "UtcNow": "2025-01-15T10:00:00.1234567Z",
             "RandGuid": "0f8fad5b-d9cb-469f-a165-70867728950e" }
  }
}`

var specNow = time.Date(2025, 1, 15, 10, 0, 0, 123456700, time.UTC)

func specMessage() hostsim.Message {
	return hostsim.Message{
		Body:                  []byte(`{"orderId":7}`),
		MessageID:             "2c1f6a0e9b1d4a8f8f0e3c5d7a9b1c2d",
		LockToken:             "b6a2f0f4-2b1e-4a53-9d0e-7d1f0c7a1d11",
		DeliveryCount:         1,
		SequenceNumber:        42,
		EnqueuedTime:          time.Date(2025, 1, 15, 10, 0, 0, 0, time.UTC),
		ContentType:           "application/json",
		ApplicationProperties: map[string]any{"tenant": "a"},
		RandGUID:              "0f8fad5b-d9cb-469f-a165-70867728950e",
	}
}

// The builder reproduces spec §3.5 byte for byte (key order included).
func TestBuildServiceBusEnvelopeMatchesSpecExample(t *testing.T) {
	t.Parallel()
	got, err := hostsim.BuildServiceBusEnvelope(specMessage(), "sbMsg", "ProcessOrders", specNow)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := json.Compact(&want, []byte(specExample35)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want.String(), string(got)); diff != "" {
		t.Errorf("envelope differs from spec §3.5 (-want +got):\n%s", diff)
	}
}

// An Event Grid event delivered to a queue: every optional property is set,
// the body's top-level fields are promoted (subject clobbers Subject, data
// stays an object) and the result is pinned in a golden file.
func TestBuildServiceBusEnvelopeEventGridGolden(t *testing.T) {
	t.Parallel()
	body := `{"topic":"/subscriptions/00000000-0000-0000-0000-000000000000",` +
		`"subject":"/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/rg-data/providers/Microsoft.Databricks/workspaces/dbw-prod",` +
		`"eventType":"Microsoft.Resources.ResourceWriteSuccess","eventTime":"2025-01-15T10:00:00.1234567Z",` +
		`"id":"4db48cba-50a2-455a-93b4-de41a3b5b7f6","data":{"operationName":"Microsoft.Databricks/workspaces/write","status":"Succeeded"},` +
		`"dataVersion":"2","metadataVersion":"1"}`
	msg := hostsim.Message{
		Body:             []byte(body),
		MessageID:        "eg-internal-id-1",
		LockToken:        "11111111-2222-4333-8444-555555555555",
		DeliveryCount:    3,
		SequenceNumber:   7,
		EnqueuedTime:     time.Date(2025, 1, 15, 10, 0, 1, 500_000_000, time.UTC),
		ExpiresAt:        time.Date(2025, 1, 29, 10, 0, 1, 500_000_000, time.UTC),
		ContentType:      "application/json",
		CorrelationID:    "corr-1",
		Subject:          "sb-subject",
		ReplyTo:          "replies",
		To:               "someone",
		SessionID:        "session-1",
		ReplyToSessionID: "reply-session",
		PartitionKey:     "pk",
		DeadLetterSource: "orders",
		ApplicationProperties: map[string]any{
			"aeg-subscription-name": "WORKSPACES",
			"aeg-delivery-count":    "0",
			"count":                 int32(2),
			"flag":                  true,
		},
		RandGUID: "0f8fad5b-d9cb-469f-a165-70867728950e",
	}
	got, err := hostsim.BuildServiceBusEnvelope(msg, "event", "workspace-events", specNow)
	if err != nil {
		t.Fatal(err)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, got, "", "  "); err != nil {
		t.Fatalf("envelope is not JSON: %v\n%s", err, got)
	}
	pretty.WriteByte('\n')
	golden := filepath.Join("testdata", "eventgrid_envelope.golden")
	if *update {
		if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), pretty.String()); diff != "" {
		t.Errorf("envelope differs from %s (-want +got):\n%s", golden, diff)
	}

	md := decodeMetadata(t, got)
	wantStrings := map[string]string{
		// The body's "subject" replaced the Service Bus Subject; the key keeps
		// its spelling, Label (same value originally) is untouched.
		"Subject":          `"/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/rg-data/providers/Microsoft.Databricks/workspaces/dbw-prod"`,
		"Label":            `"sb-subject"`,
		"ExpiresAtUtc":     "2025-01-29T10:00:01",
		"ExpiresAt":        "2025-01-29T10:00:01+00:00",
		"EnqueuedTimeUtc":  "2025-01-15T10:00:01",
		"DeliveryCount":    "3",
		"DeadLetterSource": `"orders"`,
		"eventType":        `"Microsoft.Resources.ResourceWriteSuccess"`,
		"id":               `"4db48cba-50a2-455a-93b4-de41a3b5b7f6"`,
		// JObject.Parse reads ISO strings as DateTime; (string) prints them
		// with the invariant culture.
		"eventTime": `"01/15/2025 10:00:00"`,
	}
	for k, want := range wantStrings {
		var got string
		if err := json.Unmarshal(md[k], &got); err != nil {
			t.Errorf("Metadata.%s = %s, want a JSON string: %v", k, md[k], err)
			continue
		}
		if got != want {
			t.Errorf("Metadata.%s = %q, want %q", k, got, want)
		}
	}
	if _, ok := md["subject"]; ok {
		t.Errorf("Metadata has both subject and Subject; want one key")
	}
	if got, want := string(md["data"]), `{"operationName":"Microsoft.Databricks/workspaces/write","status":"Succeeded"}`; got != want {
		t.Errorf("Metadata.data = %s, want the object %s", got, want)
	}
}

func decodeMetadata(t *testing.T, env []byte) map[string]json.RawMessage {
	t.Helper()
	var e struct {
		Data     map[string]json.RawMessage
		Metadata map[string]json.RawMessage
	}
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatalf("envelope: %v\n%s", err, env)
	}
	return e.Metadata
}

// decodeTwice undoes the host's double encoding of Data.<binding>.
func decodeTwice(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var s1, s2 string
	if err := json.Unmarshal(raw, &s1); err != nil {
		t.Fatalf("first decode of %s: %v", raw, err)
	}
	if err := json.Unmarshal([]byte(s1), &s2); err != nil {
		t.Fatalf("second decode of %s: %v", s1, err)
	}
	return s2
}

func TestBuildServiceBusEnvelopeEncoding(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		body     string
		wantData string            // Data.msg on the wire
		want     map[string]string // Metadata key -> raw JSON
		absent   []string          // Metadata keys that must not exist
	}{
		{
			name:     "plain text is double-encoded",
			body:     "hi",
			wantData: `"\"hi\""`,
			absent:   []string{"hi"},
		},
		{
			name:     "html characters are not escaped, newlines are",
			body:     "<a & b>\n",
			wantData: `"\"<a & b>\\n\""`,
		},
		{
			name:     "scalars become double-encoded strings, booleans as .NET prints them",
			body:     `{"n":7,"f":1.50,"big":12345678901234567890,"t":true,"s":"x","e":""}`,
			wantData: `"\"{\\\"n\\\":7,\\\"f\\\":1.50,\\\"big\\\":12345678901234567890,\\\"t\\\":true,\\\"s\\\":\\\"x\\\",\\\"e\\\":\\\"\\\"}\""`,
			want: map[string]string{
				"n": `"\"7\""`, "f": `"\"1.5\""`, "big": `"\"12345678901234567890\""`,
				"t": `"\"True\""`, "s": `"\"x\""`, "e": `"\"\""`,
			},
		},
		{
			name:   "arrays and nulls are not promoted; objects stay objects",
			body:   `{"list":[1,2],"nothing":null,"obj":{"a":[1,{"b":"<"}]}}`,
			want:   map[string]string{"obj": `{"a":[1,{"b":"<"}]}`},
			absent: []string{"list", "nothing"},
		},
		{
			name:   "promotion overwrites case-insensitively, keeps the key's spelling",
			body:   `{"messageid":"from-body","DELIVERYCOUNT":99}`,
			want:   map[string]string{"MessageId": `"\"from-body\""`, "DeliveryCount": `"\"99\""`},
			absent: []string{"messageid", "DELIVERYCOUNT"},
		},
		{
			name:   "keys ending in trigger are dropped, sys is not clobbered",
			body:   `{"myTrigger":"x","sys":"y"}`,
			absent: []string{"myTrigger"},
		},
		{
			name:     "a JSON array body is not promoted",
			body:     `[{"a":1}]`,
			wantData: `"\"[{\\\"a\\\":1}]\""`,
			absent:   []string{"a"},
		},
		{
			name:   "invalid JSON object body is ignored for promotion",
			body:   `{"a":1,}`,
			absent: []string{"a"},
		},
		{
			name: "duplicate names: last value wins",
			body: `{"a":1,"a":2}`,
			want: map[string]string{"a": `"\"2\""`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			msg := hostsim.Message{Body: []byte(tt.body), MessageID: "m1", LockToken: "l1", DeliveryCount: 1}
			env, err := hostsim.BuildServiceBusEnvelope(msg, "msg", "Fn", specNow)
			if err != nil {
				t.Fatal(err)
			}
			var e struct {
				Data     map[string]json.RawMessage
				Metadata map[string]json.RawMessage
			}
			if err := json.Unmarshal(env, &e); err != nil {
				t.Fatalf("%v\n%s", err, env)
			}
			if got := decodeTwice(t, e.Data["msg"]); got != tt.body {
				t.Errorf("Data.msg decodes to %q, want the body %q", got, tt.body)
			}
			if tt.wantData != "" && string(e.Data["msg"]) != tt.wantData {
				t.Errorf("Data.msg = %s, want %s", e.Data["msg"], tt.wantData)
			}
			for k, want := range tt.want {
				if got := string(e.Metadata[k]); got != want {
					t.Errorf("Metadata.%s = %s, want %s", k, got, want)
				}
			}
			for _, k := range tt.absent {
				if v, ok := e.Metadata[k]; ok {
					t.Errorf("Metadata.%s = %s, want absent", k, v)
				}
			}
			var sys map[string]string
			if err := json.Unmarshal(e.Metadata["sys"], &sys); err != nil {
				t.Fatalf("Metadata.sys = %s: %v", e.Metadata["sys"], err)
			}
			if sys["MethodName"] != "Fn" || sys["UtcNow"] != "2025-01-15T10:00:00.1234567Z" || len(sys["RandGuid"]) != 36 {
				t.Errorf("Metadata.sys = %v", sys)
			}
			// Optional strings that are empty are omitted.
			for _, k := range []string{"ContentType", "CorrelationId", "Subject", "Label", "ReplyTo", "To", "SessionId", "PartitionKey", "DeadLetterSource"} {
				if v, ok := e.Metadata[k]; ok {
					t.Errorf("Metadata.%s = %s, want omitted when empty", k, v)
				}
			}
			if got := string(e.Metadata["ApplicationProperties"]); got != "{}" {
				t.Errorf("ApplicationProperties = %s, want {}", got)
			}
		})
	}
}

// The builder is pure: same inputs, same bytes (RandGuid included).
func TestBuildServiceBusEnvelopeIsDeterministic(t *testing.T) {
	t.Parallel()
	msg := specMessage()
	msg.RandGUID = ""
	a, err := hostsim.BuildServiceBusEnvelope(msg, "sbMsg", "ProcessOrders", specNow)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := hostsim.BuildServiceBusEnvelope(msg, "sbMsg", "ProcessOrders", specNow)
	if !bytes.Equal(a, b) {
		t.Errorf("two calls differ:\n%s\n%s", a, b)
	}
	c, _ := hostsim.BuildServiceBusEnvelope(msg, "sbMsg", "ProcessOrders", specNow.Add(time.Second))
	if bytes.Equal(a, c) {
		t.Errorf("RandGuid does not change with now")
	}
}

func TestBuildServiceBusEnvelopeInvalidUTF8(t *testing.T) {
	t.Parallel()
	env, err := hostsim.BuildServiceBusEnvelope(hostsim.Message{Body: []byte{'a', 0xff, 'b'}}, "m", "F", specNow)
	if err != nil {
		t.Fatal(err)
	}
	var e struct{ Data map[string]json.RawMessage }
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	if got := decodeTwice(t, e.Data["m"]); got != "a\uFFFDb" {
		t.Errorf("body = %q, want invalid bytes replaced by U+FFFD", got)
	}
}
