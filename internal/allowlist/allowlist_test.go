package allowlist

import "testing"

func TestHosts(t *testing.T) {
	t.Parallel()
	h, err := ParseHosts("*.azuredatabricks.net, adb-1.2.example.com:8443, 127.0.0.1:9443, exact.example.org")
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]bool{
		"adb-123.4.azuredatabricks.net":      true,
		"ADB-123.4.AzureDatabricks.NET":      true,
		"adb-123.4.azuredatabricks.net:443":  true,
		"adb-123.4.azuredatabricks.net:8443": false, // wildcard means port 443
		"azuredatabricks.net":                false, // a wildcard needs a subdomain
		"evilazuredatabricks.net":            false,
		"azuredatabricks.net.evil.com":       false,
		"adb-1.2.example.com:8443":           true,
		"adb-1.2.example.com":                false, // host:port matches exactly
		"127.0.0.1:9443":                     true,
		"127.0.0.1":                          false,
		"exact.example.org":                  true,
		"exact.example.org:443":              true,
		"sub.exact.example.org":              false,
		"":                                   false,
	}
	for host, want := range tests {
		if got := h.Allows(host); got != want {
			t.Errorf("Allows(%q) = %v, want %v", host, got, want)
		}
	}
	for _, bad := range []string{"*.net", "*.127.0.0.1", "host:99999", "bad_label.example.com", "a:b:c", "*"} {
		if _, err := ParseHosts(bad); err == nil {
			t.Errorf("ParseHosts(%q) accepted", bad)
		}
	}
}

func TestSubscriptions(t *testing.T) {
	t.Parallel()
	s, err := ParseSubscriptions("AAAAAAAA-0000-0000-0000-000000000000, bbbbbbbb-0000-0000-0000-000000000000")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Allows("aaaaaaaa-0000-0000-0000-000000000000") || !s.Allows("BBBBBBBB-0000-0000-0000-000000000000") || s.Allows("cccccccc-0000-0000-0000-000000000000") {
		t.Error("subscription matching is wrong")
	}
	empty, _ := ParseSubscriptions("")
	if !empty.Allows("anything") {
		t.Error("an empty list must allow any subscription")
	}
	if _, err := ParseSubscriptions("not-a-guid"); err == nil {
		t.Error("accepted a non-GUID")
	}
}
