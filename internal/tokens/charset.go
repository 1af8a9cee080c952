package tokens

import "unicode"

// Character-class checks, written out instead of regular expressions: the
// bounded repetitions ({1,90}, {1,128}) would compile into large programs at
// package initialisation, which the Functions host's readiness probe waits on.

// allOf reports whether s has between min and max bytes, each accepted by ok.
func allOf(s string, min, max int, ok func(byte) bool) bool {
	if len(s) < min || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isHex(c byte) bool { return c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c >= '0' && c <= '9' }

// IsGUID reports whether s is 8-4-4-4-12 hex digits (either case): the
// one GUID check of the service (subscription, object, app and tenant ids).
func IsGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i]) {
				return false
			}
		}
	}
	return true
}

// validRequestIDChars: 1-128 of A-Z a-z 0-9 . _ : -
func validRequestIDChars(s string) bool {
	return allOf(s, 1, 128, func(c byte) bool { return isAlnum(c) || c == '.' || c == '_' || c == ':' || c == '-' })
}

// validSecretNameChars: 1-127 of 0-9 A-Z a-z -
func validSecretNameChars(s string) bool {
	return allOf(s, 1, 127, func(c byte) bool { return isAlnum(c) || c == '-' })
}

// validTokenIDChars: 1-128 of A-Z a-z 0-9 . _ -
func validTokenIDChars(s string) bool {
	return allOf(s, 1, 128, func(c byte) bool { return isAlnum(c) || c == '.' || c == '_' || c == '-' })
}

// validWorkspaceName: 3-64 of A-Z a-z 0-9 _ -
func validWorkspaceName(s string) bool {
	return allOf(s, 3, 64, func(c byte) bool { return isAlnum(c) || c == '_' || c == '-' })
}

// validResourceGroup: 1-90 of letters, digits, _ - . ( ) (Unicode letters
// and digits allowed, as ARM does), not ending in a period.
func validResourceGroup(s string) bool {
	if s == "" || len(s) > 90*4 || s[len(s)-1] == '.' {
		return false
	}
	n := 0
	for _, r := range s {
		n++
		switch {
		case r == '-' || r == '_' || r == '.' || r == '(' || r == ')':
		case r < 0x80 && isAlnum(byte(r)):
		case r >= 0x80 && (isLetterOrDigit(r)):
		default:
			return false
		}
	}
	return n <= 90
}

func isLetterOrDigit(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }

// Clip shortens text quoted in a message to at most n characters, marking
// the cut with "…": callers' input is echoed, never at any length.
func Clip(s string, n int) string {
	count := 0
	for i := range s {
		if count == n {
			return s[:i] + "…"
		}
		count++
	}
	return s
}
