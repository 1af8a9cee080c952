package deploycheck

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// docFiles are the repository's Markdown files, the Makefile and the
// Bicep templates: every place a deployment command is written down.
func docFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(root(t), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == "dist" || d.Name() == "bin" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".md") || strings.HasSuffix(p, ".bicep") || d.Name() == "Makefile" || d.Name() == "azure.yaml") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestFuncPublishSaysCustom proves every documented `func azure
// functionapp publish` passes --custom: the package has no
// local.settings.json, so without it Core Tools cannot tell the worker
// runtime and stops with "Worker runtime cannot be 'None'"
// (azure-functions-core-tools GlobalCoreToolsSettings.Init reads the
// runtime from --custom and the like, else from local.settings.json).
func TestFuncPublishSaysCustom(t *testing.T) {
	publish := regexp.MustCompile("func azure functionapp publish[^`\n)]*")
	found := 0
	for _, f := range docFiles(t) {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range publish.FindAllString(string(raw), -1) {
			found++
			if !strings.Contains(m, "--custom") {
				rel, _ := filepath.Rel(root(t), f)
				t.Errorf("%s: %q lacks --custom: without a local.settings.json Core Tools fails with \"Worker runtime cannot be 'None'\"", rel, m)
			}
		}
	}
	if found == 0 {
		t.Error("no `func azure functionapp publish` documented anywhere; the check would be vacuous")
	}
}
