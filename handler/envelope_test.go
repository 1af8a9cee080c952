package handler

import (
	"os"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

func TestDecodeServiceBusSpecEnvelopes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file, body, messageID string
		delivery              int
		props                 map[string]any
	}{
		{"testdata/servicebus_spec_3_5.json", `{"orderId":7}`, "2c1f6a0e9b1d4a8f8f0e3c5d7a9b1c2d", 1, map[string]any{"tenant": "a"}},
		// The 2020 capture names its binding myQueueItem: a single Data entry is used whatever its name.
		{"testdata/servicebus_capture_2020.json", `{"hello":"world"}`, "088fb2b9aede42e7a154dbc7f803a566", 3, nil},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			msg, err := decodeServiceBus(raw, "message")
			if err != nil {
				t.Fatal(err)
			}
			if string(msg.Body) != tt.body || msg.MessageID != tt.messageID || msg.DeliveryCount != tt.delivery {
				t.Errorf("got body %s, id %q, delivery %d", msg.Body, msg.MessageID, msg.DeliveryCount)
			}
			if tt.props != nil && msg.Properties["tenant"] != "a" {
				t.Errorf("properties = %v", msg.Properties)
			}
		})
	}
}

// The holder the ledger resumes by is the broker's sequence number, read
// only in the form the host writes it: a message body with a top-level
// SequenceNumber field overwrites the key (spec §3.3), and must not let a
// sender name another message's attempt as its own.
func TestHolderIsTheBrokersSequenceNumber(t *testing.T) {
	t.Parallel()
	for md, want := range map[string]string{
		`"SequenceNumber":"42"`:                   "sb/token-requests/42",
		`"SequenceNumber":42`:                     "sb/token-requests/42",
		`"SequenceNumber":"\"42\""`:               "", // a body field, promoted and encoded twice
		`"SequenceNumber":{"n":42}`:               "", // a body object
		`"SequenceNumber":"-3"`:                   "",
		`"SequenceNumber":"99999999999999999999"`: "",
		`"DeliveryCount":"2"`:                     "",
	} {
		msg, err := decodeServiceBus([]byte(`{"Data":{"message":"\"{}\""},"Metadata":{`+md+`}}`), "message")
		if err != nil {
			t.Fatalf("%s: %v", md, err)
		}
		if got := msg.holder("token-requests"); got != want {
			t.Errorf("Metadata {%s}: holder %q, want %q", md, got, want)
		}
	}
}

// TestDeliveryCountIsTheHosts: the delivery count is read only in the form
// the host writes it; a body field of that name, promoted into Metadata
// and encoded twice, reads as a first delivery.
func TestDeliveryCountIsTheHosts(t *testing.T) {
	t.Parallel()
	for md, want := range map[string]int{
		`"DeliveryCount":"3"`:     3,
		`"DeliveryCount":3`:       3,
		`"DeliveryCount":"\"9\""`: 1, // a body field, promoted and encoded twice
		`"DeliveryCount":{"n":9}`: 1,
		`"DeliveryCount":"0"`:     1,
		`"DeliveryCount":"-2"`:    1,
		``:                        1,
	} {
		msg, err := decodeServiceBus([]byte(`{"Data":{"message":"\"{}\""},"Metadata":{`+md+`}}`), "message")
		if err != nil {
			t.Fatalf("%s: %v", md, err)
		}
		if msg.DeliveryCount != want {
			t.Errorf("Metadata {%s}: delivery %d, want %d", md, msg.DeliveryCount, want)
		}
	}
}

func TestUnwrapBody(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		`"\"{\\\"a\\\":1}\""`:    `{"a":1}`,       // the host's double encoding
		`"{\"a\":1}"`:            `{"a":1}`,       // one layer (simplified samples)
		`{"a":1}`:                `{"a":1}`,       // an object
		`"\"hi\""`:               `hi`,            // plain text, double-encoded
		`"\"\\\"hi\\\"\""`:       `"hi"`,          // the sender's own JSON string survives
		`"\"not closed`:          `"\"not closed`, // broken: left as is
		`  "\"{\\\"a\\\":1}\"" `: `{"a":1}`,
	}
	for in, want := range tests {
		if got := string(unwrapBody([]byte(in))); got != want {
			t.Errorf("unwrapBody(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestDecodeEnvelopeRefusesGarbage(t *testing.T) {
	t.Parallel()
	for _, in := range []string{``, `null`, `[]`, `{"Data":{}}`, `{"Data":{"a":"1","b":"2"}}`, `{"Data":5}`, `not json`} {
		if _, err := decodeServiceBus([]byte(in), "message"); err == nil {
			t.Errorf("decodeServiceBus(%q) accepted", in)
		}
	}
}

func FuzzDecodeServiceBus(f *testing.F) {
	for _, file := range []string{"testdata/servicebus_spec_3_5.json", "testdata/servicebus_capture_2020.json"} {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"Data":{"message":"\"\\\"x\\\"\""},"Metadata":{"DeliveryCount":"\"abc\"","ApplicationProperties":[1]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, err := decodeServiceBus(b, "message")
		if err == nil && msg.DeliveryCount < 1 {
			t.Fatalf("delivery count %d", msg.DeliveryCount)
		}
	})
}

// BenchmarkDecodeServiceBus measures one envelope decode, the work every
// queue invocation does before anything else (allocations: -benchmem).
func BenchmarkDecodeServiceBus(b *testing.B) {
	raw, err := os.ReadFile("testdata/servicebus_spec_3_5.json")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeServiceBus(raw, "message"); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDecodeCommand(t *testing.T) {
	t.Parallel()
	lim := tokens.Limits{DefaultLifetime: time.Hour, MaxLifetime: 2 * time.Hour}
	ws := `"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/ws1"`
	tests := []struct {
		body, action, target string
	}{
		{`{"action":"create","workspaceResourceId":` + ws + `}`, "create", ""},
		{`{"action":"revoke","workspaceResourceId":` + ws + `,"tokenId":"t1"}`, "revoke", ""},
		{`{"action":5}`, "", "action"},
		{`{"action":null,"workspaceResourceId":` + ws + `}`, "", "action"},
		{`{"workspaceResourceId":` + ws + `}`, "", "action"},
		{`{"action":"mint"}`, "mint", "action"},
		{`[1]`, "", "body"},
		{`{"action":"create","workspaceResourceId":` + ws + `,"extra":1}`, "create", "extra"},
	}
	for _, tt := range tests {
		cmd, err := decodeCommand([]byte(tt.body), lim)
		if cmd.action != tt.action {
			t.Errorf("%s: action %q", tt.body, cmd.action)
		}
		target := ""
		if e := tokens.AsError(err); e != nil && len(e.Details) > 0 {
			target = e.Details[0].Target
		}
		if target != tt.target {
			t.Errorf("%s: problem target %q, want %q (err %v)", tt.body, target, tt.target, err)
		}
	}
}
