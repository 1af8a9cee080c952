package hostsim

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/contoso/databricks-token-broker/devstack/kit"
)

// The host serializes with Newtonsoft.Json, so this file writes JSON the way
// Newtonsoft does by default: compact, keys in insertion order, only '"', '\\'
// and control characters escaped (no HTML escaping), plus U+0085, U+2028 and
// U+2029.

// shortEscape holds, for each character Newtonsoft escapes as a backslash
// and one character, that character.
var shortEscape = [utf8.RuneSelf]byte{'"': '"', '\\': '\\', '\b': 'b', '\f': 'f', '\n': 'n', '\r': 'r', '\t': 't'}

// appendJSONString appends s as a JSON string literal.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf && shortEscape[r] != 0:
			dst = append(dst, '\\', shortEscape[r])
		case r < 0x20, r == '\u0085', r == '\u2028', r == '\u2029':
			dst = fmt.Appendf(dst, `\u%04x`, r)
		default:
			dst = utf8.AppendRune(dst, r)
		}
	}
	return append(dst, '"')
}

// jsonString returns s as a JSON string literal.
func jsonString(s string) []byte { return appendJSONString(nil, s) }

// doubleEncoded returns the host's wire form of a .NET string value:
// JsonConvert.SerializeObject(s) and then JSON-encoded again.
func doubleEncoded(s string) []byte { return jsonString(string(jsonString(s))) }

// object is a JSON object with ordered, case-insensitively unique keys, like
// the host's binding-data dictionary (StringComparer.OrdinalIgnoreCase).
type object struct {
	keys []string
	vals map[string][]byte // lower-cased key -> encoded value
}

func newObject() *object { return &object{vals: map[string][]byte{}} }

// set adds key or, when a key equal ignoring case exists, replaces its value
// and keeps the existing spelling and position (.NET Dictionary indexer).
func (o *object) set(key string, val []byte) {
	lk := strings.ToLower(key)
	if _, ok := o.vals[lk]; !ok {
		o.keys = append(o.keys, key)
	}
	o.vals[lk] = val
}

func (o *object) get(key string) ([]byte, bool) {
	v, ok := o.vals[strings.ToLower(key)]
	return v, ok
}

func (o *object) appendTo(dst []byte, skip func(key string) bool) []byte {
	dst = append(dst, '{')
	first := true
	for _, k := range o.keys {
		if skip != nil && skip(k) {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendJSONString(dst, k)
		dst = append(dst, ':')
		dst = append(dst, o.vals[strings.ToLower(k)]...)
	}
	return append(dst, '}')
}

func (o *object) bytes() []byte { return o.appendTo(nil, nil) }

// reencode re-serializes raw JSON compactly with the encoder above, keeping
// key order and number literals (Newtonsoft round trip of a JToken).
func reencode(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out []byte
	if err := reencodeValue(dec, &out); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("trailing data after JSON value")
	}
	return out, nil
}

func reencodeValue(dec *json.Decoder, out *[]byte) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			*out = append(*out, '{')
			for i := 0; dec.More(); i++ {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				if i > 0 {
					*out = append(*out, ',')
				}
				*out = appendJSONString(*out, kt.(string))
				*out = append(*out, ':')
				if err := reencodeValue(dec, out); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil {
				return err
			}
			*out = append(*out, '}')
		case '[':
			*out = append(*out, '[')
			for i := 0; dec.More(); i++ {
				if i > 0 {
					*out = append(*out, ',')
				}
				if err := reencodeValue(dec, out); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil {
				return err
			}
			*out = append(*out, ']')
		}
	case string:
		*out = appendJSONString(*out, t)
	case json.Number:
		*out = append(*out, t...)
	case bool:
		*out = strconv.AppendBool(*out, t)
	case nil:
		*out = append(*out, "null"...)
	}
	return nil
}

// dotnetScalarString is (string)JToken for a scalar, as Utility.ApplyBindingData
// does when it copies body properties into binding data: numbers keep their
// invariant-culture text, booleans become "True"/"False", and strings that
// JObject.Parse reads as dates (DateParseHandling.DateTime) come back as
// DateTime.ToString(InvariantCulture), "01/15/2025 10:00:00". ok is false
// for null.
func dotnetScalarString(v any) (s string, ok bool) {
	switch v := v.(type) {
	case nil:
		return "", false
	case string:
		if d, ok := newtonsoftDate(v); ok {
			return d, true
		}
		return v, true
	case bool:
		if v {
			return "True", true
		}
		return "False", true
	case json.Number:
		lit := string(v)
		if !strings.ContainsAny(lit, ".eE") {
			return strings.TrimPrefix(lit, "+"), true
		}
		f, err := v.Float64()
		if err != nil {
			return lit, true
		}
		return dotnetDouble(f), true
	}
	return fmt.Sprint(v), true
}

// isoDateRE is what Newtonsoft's DateTimeParser accepts as an ISO date.
var isoDateRE = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}(?::?\d{2})?)?\s*$`)

// newtonsoftDate returns the invariant-culture text of s when s reads as a
// date: UTC and offset dates are shown in UTC (the host's local zone in
// Azure), dates without a zone as written; fractions are dropped.
func newtonsoftDate(s string) (string, bool) {
	m := isoDateRE.FindStringSubmatch(s)
	if m == nil {
		return "", false
	}
	t, err := time.Parse("2006-01-02T15:04:05", m[1])
	if err != nil {
		return "", false
	}
	if z := m[3]; z != "" && z != "Z" {
		sign := 1
		if z[0] == '-' {
			sign = -1
		}
		digits := strings.ReplaceAll(z[1:], ":", "")
		hh, _ := strconv.Atoi(digits[:2])
		mm := 0
		if len(digits) == 4 {
			mm, _ = strconv.Atoi(digits[2:])
		}
		t = t.Add(-time.Duration(sign) * (time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute))
	}
	return t.Format("01/02/2006 15:04:05"), true
}

// dotnetDouble formats f like .NET Core's double.ToString(InvariantCulture):
// shortest round-trip digits, "E+XX" notation for very large/small values.
func dotnetDouble(f float64) string {
	if a := math.Abs(f); a == 0 || (a >= 1e-4 && a < 1e15) {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'E', -1, 64)
}

// appendNativeJSON encodes an application-property value the way the host's
// JObject.FromObject of the properties dictionary does.
func appendNativeJSON(dst []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...)
	case string:
		return appendJSONString(dst, v)
	case bool:
		return strconv.AppendBool(dst, v)
	case int, int8, int16, int32, int64:
		return strconv.AppendInt(dst, reflect.ValueOf(v).Int(), 10)
	case uint, uint8, uint16, uint32, uint64:
		return strconv.AppendUint(dst, reflect.ValueOf(v).Uint(), 10)
	case float32:
		return appendFloat(dst, float64(v))
	case float64:
		return appendFloat(dst, v)
	case time.Time:
		return appendJSONString(dst, formatDotnetUtc(v))
	case time.Duration:
		return appendJSONString(dst, formatTimeSpan(v))
	case []byte:
		return appendJSONString(dst, base64.StdEncoding.EncodeToString(v))
	case [16]byte:
		return appendJSONString(dst, kit.FormatGUID(v))
	case map[string]any:
		return appendProperties(dst, v)
	case []any:
		dst = append(dst, '[')
		for i, e := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendNativeJSON(dst, e)
		}
		return append(dst, ']')
	case fmt.Stringer:
		return appendJSONString(dst, v.String())
	}
	if b, err := json.Marshal(v); err == nil {
		if re, err := reencode(b); err == nil {
			return append(dst, re...)
		}
	}
	return appendJSONString(dst, fmt.Sprint(v))
}

func appendFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return appendJSONString(dst, strconv.FormatFloat(f, 'g', -1, 64))
	}
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(s, ".eEn") {
		s += ".0" // Newtonsoft writes doubles with a fraction
	}
	return append(dst, s...)
}

// Date formats of the host (see spec §2): DateTime values go through
// DateTime.Parse(v.ToString()), which keeps seconds and drops the zone.
const (
	layoutDateTime       = "2006-01-02T15:04:05"
	layoutDateTimeOffset = "2006-01-02T15:04:05-07:00"
	// Newtonsoft's default "yyyy'-'MM'-'dd'T'HH':'mm':'ss.FFFFFFFK" for a UTC DateTime.
	layoutDotnetUtc = "2006-01-02T15:04:05.9999999Z07:00"
)

func formatDotnetUtc(t time.Time) string { return t.UTC().Format(layoutDotnetUtc) }

func formatTimeSpan(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	days := d / (24 * time.Hour)
	d -= days * 24 * time.Hour
	h := d / time.Hour
	d -= h * time.Hour
	m := d / time.Minute
	d -= m * time.Minute
	s := d / time.Second
	d -= s * time.Second
	out := fmt.Sprintf("%02d:%02d:%02d", h, m, s)
	if days > 0 {
		out = fmt.Sprintf("%d.%s", days, out)
	}
	if d > 0 {
		out += fmt.Sprintf(".%07d", d/100)
	}
	if neg {
		out = "-" + out
	}
	return out
}
