package handler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/contoso/databricks-token-broker/internal/redact"
)

// invocationRequest is the host's envelope: {"Data": {...}, "Metadata": {...}}.
// Only the metadata the handler reads is decoded (the host sends a dozen
// more keys, plus every top-level body field): decoding all of it into a
// map cost most of an envelope's allocations.
type invocationRequest struct {
	Data     map[string]json.RawMessage `json:"Data"`
	Metadata struct {
		MessageID             json.RawMessage `json:"MessageId"`
		CorrelationID         json.RawMessage `json:"CorrelationId"`
		DeliveryCount         json.RawMessage `json:"DeliveryCount"`
		SequenceNumber        json.RawMessage `json:"SequenceNumber"`
		ApplicationProperties json.RawMessage `json:"ApplicationProperties"`
	} `json:"Metadata"`
}

// queueMessage is a Service Bus message as the handler needs it.
type queueMessage struct {
	Body          []byte
	MessageID     string
	CorrelationID string
	DeliveryCount int
	// SequenceNumber is the broker's number for the message, the same on
	// every redelivery; 0 when the envelope has none the host wrote.
	SequenceNumber int64
	// Properties are the message's application properties, the only
	// Metadata object body fields cannot overwrite by accident (the host
	// copies top-level body fields into Metadata, see spec §3.3).
	Properties map[string]any
}

// errEnvelope marks an envelope the host would never send: nothing in it
// can be retried into success.
var errEnvelope = errors.New("malformed invocation envelope")

// decodeEnvelope reads the envelope. binding is the trigger's name in
// function.json; when Data has exactly one entry it is used whatever its
// name, so a renamed binding does not break the function.
func decodeEnvelope(body []byte, binding string) (invocationRequest, json.RawMessage, error) {
	var inv invocationRequest
	if err := json.Unmarshal(body, &inv); err != nil {
		return inv, nil, fmt.Errorf("%w: %v", errEnvelope, err)
	}
	raw, ok := inv.Data[binding]
	if !ok && len(inv.Data) == 1 {
		for _, v := range inv.Data {
			raw, ok = v, true
		}
	}
	if !ok {
		return inv, nil, fmt.Errorf("%w: Data has no %q entry", errEnvelope, binding)
	}
	return inv, raw, nil
}

// decodeServiceBus reads a Service Bus trigger envelope. The body arrives
// as a JSON string holding a JSON string (the host encodes the message
// string once more); a single layer, or a bare object, is accepted too.
// Base64 is never guessed.
func decodeServiceBus(body []byte, binding string) (queueMessage, error) {
	inv, raw, err := decodeEnvelope(body, binding)
	if err != nil {
		return queueMessage{}, err
	}
	msg := queueMessage{Body: unwrapBody(raw)}
	md := inv.Metadata
	msg.MessageID = metaString(md.MessageID)
	msg.CorrelationID = metaString(md.CorrelationID)
	// Read as strictly as the sequence number: a body field named
	// DeliveryCount (promoted, encoded twice) would otherwise pass for a
	// redelivery, which revokes and reissues an inline event token, or
	// for the last delivery. Such a message reads as its first delivery.
	msg.DeliveryCount = max(1, int(min(hostNumber(md.DeliveryCount), 1<<20)))
	msg.SequenceNumber = hostNumber(md.SequenceNumber)
	if len(md.ApplicationProperties) > 0 && md.ApplicationProperties[0] == '{' {
		_ = json.Unmarshal(md.ApplicationProperties, &msg.Properties)
	}
	return msg, nil
}

// unwrapBody peels JSON string layers off a trigger value until it is no
// longer a JSON string: "\"{...}\"" → "{...}" → {...}. At most two layers
// are the host's; a third would be the sender's own encoding, kept as is.
func unwrapBody(raw json.RawMessage) []byte {
	b := bytes.TrimSpace(raw)
	for range 2 {
		if len(b) == 0 || b[0] != '"' {
			break
		}
		var s string
		if json.Unmarshal(b, &s) != nil {
			break
		}
		b = []byte(s)
	}
	return b
}

// metaString reads a scalar metadata value: the host sends strings
// double-encoded ("\"abc\"") and numbers as strings ("1").
func metaString(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	v := string(unwrapBody(raw))
	return strings.TrimSpace(v)
}

// hostNumber reads a number the host wrote into Metadata: a JSON string of
// digits ("42"), or a bare number. A top-level body field of the same name
// overwrites the key (spec §3.3), but arrives encoded twice ("\"42\""), or
// as an object: never a number the broker assigned, so it reads as 0.
func hostNumber(raw json.RawMessage) int64 {
	b := bytes.TrimSpace(raw)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if json.Unmarshal(b, &s) != nil {
			return 0
		}
		b = []byte(s)
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || n <= 0 {
		return 0
	}
	return n
}

// holder names the message for the ledger (tokens.CreateOptions.Holder):
// its queue and sequence number, the same on each of its deliveries and
// never chosen by whoever sent it. Empty when the number is unknown.
func (m queueMessage) holder(queue string) string {
	if m.SequenceNumber == 0 {
		return ""
	}
	return "sb/" + queue + "/" + strconv.FormatInt(m.SequenceNumber, 10)
}

// invocationReply is the envelope the host expects back: always a JSON
// object with Content-Type application/json (anything else fails the
// invocation, and an empty or null body hangs it until the timeout).
type invocationReply struct {
	Outputs     map[string]any `json:"Outputs"`
	Logs        []string       `json:"Logs"`
	ReturnValue any            `json:"ReturnValue"`
}

// reply answers the host. status 2xx completes a queue message; anything
// else makes Service Bus redeliver it.
func reply(w http.ResponseWriter, status int, logs ...string) {
	out := make([]string, len(logs)) // never nil: the host wants a list
	for i, l := range logs {
		out[i] = redact.Text(l) // a failure's message may quote an upstream
	}
	writeJSON(w, status, invocationReply{Outputs: map[string]any{}, Logs: out})
}
