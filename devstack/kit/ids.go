package kit

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"strconv"
)

// Hex returns n random bytes in hex (2n characters): secret versions,
// request ids, token ids, identity headers.
func Hex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// GUID returns a random (version 4) GUID in its usual lower-case form:
// client and object ids, correlation ids, invocation ids.
func GUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return FormatGUID(b)
}

// FormatGUID writes b in a GUID's 8-4-4-4-12 hex form, as it is (lock
// tokens are 16 bytes of whatever the broker chose).
func FormatGUID(b [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// WorkspaceNumber returns a random 16-digit number, the form of an Azure
// Databricks workspace id (the 1234567890123456 of adb-1234567890123456.7).
func WorkspaceNumber() string {
	n, _ := rand.Int(rand.Reader, big.NewInt(9e15))
	return strconv.FormatInt(n.Int64()+1e15, 10)
}
