// Package deploycheck holds the offline checks of the deployment side: the
// Bicep templates (through tools/bicepcheck, a tree-sitter grammar check),
// host.json and the function folders against the contract, and the Function
// App's app settings against the settings the binary reads. It has no
// non-test code beyond this comment.
package deploycheck
