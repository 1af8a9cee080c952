package hostsim

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/contoso/databricks-token-broker/devstack/kit"
)

// Message is the part of a received Service Bus message that the host puts
// into the invocation envelope. Empty strings stand for .NET nulls and are
// omitted from Metadata.
type Message struct {
	Body           []byte
	MessageID      string
	LockToken      string // GUID text, e.g. "b6a2f0f4-2b1e-4a53-9d0e-7d1f0c7a1d11"
	DeliveryCount  uint32
	SequenceNumber int64
	EnqueuedTime   time.Time
	// ExpiresAt is when the message expires; zero means never
	// (DateTimeOffset.MaxValue, sent as "9999-12-31T23:59:59").
	ExpiresAt time.Time

	ContentType      string
	CorrelationID    string
	Subject          string // also sent as Label
	ReplyTo          string
	To               string
	SessionID        string
	ReplyToSessionID string
	PartitionKey     string
	DeadLetterSource string

	// ApplicationProperties are sent twice, as ApplicationProperties and
	// UserProperties, as a JSON object with native value types.
	ApplicationProperties map[string]any

	// RandGUID is Metadata.sys.RandGuid. When empty, a GUID derived from the
	// message, the function name and now is used, so the builder stays pure.
	RandGUID string
}

// MessageFromReceived converts a message received with the azservicebus SDK.
func MessageFromReceived(m *azservicebus.ReceivedMessage) Message {
	s := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	msg := Message{
		Body:                  m.Body,
		MessageID:             m.MessageID,
		LockToken:             kit.FormatGUID(m.LockToken),
		DeliveryCount:         m.DeliveryCount,
		ContentType:           s(m.ContentType),
		CorrelationID:         s(m.CorrelationID),
		Subject:               s(m.Subject),
		ReplyTo:               s(m.ReplyTo),
		To:                    s(m.To),
		SessionID:             s(m.SessionID),
		ReplyToSessionID:      s(m.ReplyToSessionID),
		PartitionKey:          s(m.PartitionKey),
		DeadLetterSource:      s(m.DeadLetterSource),
		ApplicationProperties: m.ApplicationProperties,
	}
	if m.SequenceNumber != nil {
		msg.SequenceNumber = *m.SequenceNumber
	}
	if m.EnqueuedTime != nil {
		msg.EnqueuedTime = *m.EnqueuedTime
	}
	// The SDK sets ExpiresAt = EnqueuedTime + TTL even when the TTL header is
	// 0 (absent); .NET reports DateTimeOffset.MaxValue for "never expires".
	if m.ExpiresAt != nil && m.TimeToLive != nil && *m.TimeToLive > 0 {
		msg.ExpiresAt = *m.ExpiresAt
	}
	return msg
}

// BuildServiceBusEnvelope returns the invocation request body that the
// Functions host (Service Bus extension 5.x, cardinality one, no dataType)
// POSTs to /<functionName> for msg, as in spec §3.5:
//
//   - Data.<bindingName> is the body decoded as UTF-8 and JSON-encoded twice;
//   - Metadata holds the SB binding data in the extension's order, strings
//     double-encoded (omitted when empty), numbers as strings, dates without
//     zone (…Utc) and with "+00:00", ApplicationProperties/UserProperties as
//     objects;
//   - when the body is a JSON object, its top-level non-array, non-null
//     properties are then copied into Metadata (Utility.ApplyBindingData):
//     objects as objects, scalars as (string)JToken, double-encoded (7 → "7",
//     true → "True", an ISO date string → "01/15/2025 10:00:00"). A property whose
//     name equals an existing key ignoring case replaces that key's value
//     (the key keeps its spelling), so a body "subject" clobbers "Subject";
//   - keys ending in "trigger" (any case) are dropped from Metadata;
//   - Metadata.sys = {MethodName, UtcNow, RandGuid} comes last.
//
// The function is pure: the same inputs give the same bytes.
func BuildServiceBusEnvelope(msg Message, bindingName, functionName string, now time.Time) ([]byte, error) {
	return buildServiceBusEnvelope(msg, bindingName, functionName, now, false)
}

// buildServiceBusEnvelope with binary set is the "dataType": "binary" form
// (spec §3.1 alternative): Data.<binding> is plain base64 and no body
// property is promoted.
func buildServiceBusEnvelope(msg Message, bindingName, functionName string, now time.Time, binary bool) ([]byte, error) {
	if bindingName == "" {
		return nil, errors.New("hostsim: empty binding name")
	}
	// MessageToStringConverter: strict UTF-8; invalid bytes become U+FFFD here.
	body := string(msg.Body)
	if !utf8.ValidString(body) {
		body = strings.ToValidUTF8(body, "\uFFFD")
	}

	md := newObject()
	addString := func(k, v string) {
		if v != "" {
			md.set(k, doubleEncoded(v))
		}
	}
	md.set("DeliveryCount", jsonString(strconv.FormatUint(uint64(msg.DeliveryCount), 10)))
	addString("DeadLetterSource", msg.DeadLetterSource)
	addString("LockToken", msg.LockToken)
	expires := msg.ExpiresAt
	if expires.IsZero() {
		expires = time.Date(9999, 12, 31, 23, 59, 59, 999999900, time.UTC)
	}
	md.set("ExpiresAtUtc", jsonString(expires.UTC().Format(layoutDateTime)))
	md.set("ExpiresAt", jsonString(expires.UTC().Format(layoutDateTimeOffset)))
	md.set("EnqueuedTimeUtc", jsonString(msg.EnqueuedTime.UTC().Format(layoutDateTime)))
	md.set("EnqueuedTime", jsonString(msg.EnqueuedTime.UTC().Format(layoutDateTimeOffset)))
	addString("MessageId", msg.MessageID)
	addString("ContentType", msg.ContentType)
	addString("ReplyTo", msg.ReplyTo)
	md.set("SequenceNumber", jsonString(strconv.FormatInt(msg.SequenceNumber, 10)))
	addString("To", msg.To)
	addString("Label", msg.Subject)
	addString("Subject", msg.Subject)
	addString("CorrelationId", msg.CorrelationID)
	addString("SessionId", msg.SessionID)
	addString("ReplyToSessionId", msg.ReplyToSessionID)
	addString("PartitionKey", msg.PartitionKey)
	props := appendProperties(nil, msg.ApplicationProperties)
	md.set("ApplicationProperties", props)
	md.set("UserProperties", props)

	if !binary {
		if err := promoteBodyProperties(md, body); err != nil {
			return nil, err
		}
	}

	randGUID := msg.RandGUID
	if randGUID == "" {
		randGUID = derivedGUID(functionName, msg.LockToken, msg.MessageID, strconv.FormatUint(uint64(msg.DeliveryCount), 10), now.UTC().Format(time.RFC3339Nano))
	}

	var out []byte
	out = append(out, `{"Data":{`...)
	out = appendJSONString(out, bindingName)
	out = append(out, ':')
	if binary {
		out = appendJSONString(out, base64.StdEncoding.EncodeToString(msg.Body))
	} else {
		out = append(out, doubleEncoded(body)...)
	}
	out = append(out, `},"Metadata":`...)
	md.set("sys", sysObject(functionName, now, randGUID))
	out = md.appendTo(out, isTriggerKey)
	out = append(out, '}')
	return out, nil
}

func isTriggerKey(k string) bool { return strings.HasSuffix(strings.ToLower(k), "trigger") }

func sysObject(functionName string, now time.Time, randGUID string) []byte {
	o := newObject()
	o.set("MethodName", jsonString(functionName))
	o.set("UtcNow", jsonString(formatDotnetUtc(now)))
	o.set("RandGuid", jsonString(randGUID))
	return o.bytes()
}

// appendProperties writes props as a JSON object with sorted keys, each
// value as appendNativeJSON writes it: the application properties, and any
// dictionary among their values.
func appendProperties(dst []byte, props map[string]any) []byte {
	dst = append(dst, '{')
	for i, k := range slices.Sorted(maps.Keys(props)) {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, k)
		dst = append(dst, ':')
		dst = appendNativeJSON(dst, props[k])
	}
	return append(dst, '}')
}

// promoteBodyProperties is Utility.ApplyBindingData: a body that is a JSON
// object has its top-level properties copied into binding data. Invalid JSON
// is ignored, as the host swallows the parse error.
func promoteBodyProperties(md *object, body string) error {
	trimmed := strings.TrimSpace(body)
	if !strings.HasPrefix(trimmed, "{") || !strings.HasSuffix(trimmed, "}") {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(trimmed))
	dec.UseNumber()
	var props []struct {
		key string
		raw json.RawMessage
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil
		}
		props = append(props, struct {
			key string
			raw json.RawMessage
		}{kt.(string), raw})
	}
	if _, err := dec.Token(); err != nil {
		return nil
	}
	// JObject.Parse keeps the last of duplicate names at the first one's place.
	index := map[string]int{}
	uniq := props[:0:0]
	for _, p := range props {
		if i, ok := index[p.key]; ok {
			uniq[i].raw = p.raw
			continue
		}
		index[p.key] = len(uniq)
		uniq = append(uniq, p)
	}
	props = uniq
	for _, p := range props {
		raw := bytes.TrimSpace(p.raw)
		if len(raw) == 0 {
			continue
		}
		switch raw[0] {
		case '[':
			continue
		case '{':
			enc, err := reencode(raw)
			if err != nil {
				return fmt.Errorf("hostsim: re-encode body property %q: %w", p.key, err)
			}
			md.set(p.key, enc)
		default:
			var v any
			d := json.NewDecoder(bytes.NewReader(raw))
			d.UseNumber()
			if err := d.Decode(&v); err != nil {
				return nil
			}
			s, ok := dotnetScalarString(v)
			if !ok {
				continue
			}
			md.set(p.key, doubleEncoded(s))
		}
	}
	return nil
}

// derivedGUID returns a version-4-shaped GUID determined by parts.
func derivedGUID(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	var b [16]byte
	copy(b[:], h[:16])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return kit.FormatGUID(b)
}
