package workspace

import "testing"

func TestHostOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in           string
		allowLoop    bool
		scheme, host string
		ok           bool
	}{
		{"adb-1234.5.azuredatabricks.net", false, "https", "adb-1234.5.azuredatabricks.net", true},
		{"ADB-1234.5.AzureDatabricks.net/", false, "https", "adb-1234.5.azuredatabricks.net", true},
		{"https://adb-1.2.azuredatabricks.net", false, "https", "adb-1.2.azuredatabricks.net", true},
		{"127.0.0.1:8443", false, "https", "127.0.0.1:8443", true},
		{"http://127.0.0.1:8080", true, "http", "127.0.0.1:8080", true},
		{"http://127.0.0.1:8080", false, "", "", false},             // plain http needs ALLOW_INSECURE_LOOPBACK
		{"http://adb-1.2.azuredatabricks.net", true, "", "", false}, // and a loopback host
		{"adb-1.2.azuredatabricks.net/path", false, "", "", false},
		{"user@adb-1.2.azuredatabricks.net", false, "", "", false},
		{"", false, "", "", false},
		{"https://", false, "", "", false},
	}
	for _, tt := range tests {
		scheme, host, err := hostOf(tt.in, tt.allowLoop)
		if (err == nil) != tt.ok || scheme != tt.scheme || host != tt.host {
			t.Errorf("hostOf(%q, %v) = %q %q %v", tt.in, tt.allowLoop, scheme, host, err)
		}
	}
}
