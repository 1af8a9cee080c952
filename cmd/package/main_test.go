package main

import (
	"archive/zip"
	"bytes"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const hostJSON = `{"version": "2.0", "customHandler": {"description": {"defaultExecutablePath": "handler"}, "enableForwardingHttpRequest": true}}`

// app writes a small app root: host.json, two function folders and things
// that must stay out of the package.
func app(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	write(t, filepath.Join(root, "host.json"), hostJSON)
	write(t, filepath.Join(root, "create-token", "function.json"), `{"bindings": [{"type": "httpTrigger", "direction": "in", "name": "req"}, {"type": "http", "direction": "out", "name": "res"}]}`)
	write(t, filepath.Join(root, "token-requests", "function.json"), `{"bindings": [{"type": "serviceBusTrigger", "direction": "in", "name": "message"}]}`)
	write(t, filepath.Join(root, "create-token", "notes.md"), "not deployed")
	write(t, filepath.Join(root, "internal", "x.go"), "package x")
	write(t, filepath.Join(root, ".vscode", "function.json"), `{"bindings": [{}]}`)
	write(t, filepath.Join(root, "local.settings.json"), `{"Values": {"SECRET": "x"}}`)
	write(t, filepath.Join(root, "main.go"), "package main")
	return root
}

func write(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

type entry struct {
	mode fs.FileMode
	data []byte
}

func readZip(t *testing.T, name string) map[string]entry {
	t.Helper()
	zr, err := zip.OpenReader(name)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	got := map[string]entry{}
	for _, f := range zr.File {
		r, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		got[f.Name] = entry{f.Mode(), data}
	}
	return got
}

func names(m map[string]entry) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestPackagesPrebuiltBinary(t *testing.T) {
	root := app(t)
	out := filepath.Join(t.TempDir(), "dist", "app.zip")
	stage := filepath.Join(t.TempDir(), "stage")
	binary := filepath.Join(t.TempDir(), "prebuilt")
	write(t, binary, "#!/bin/sh\necho dummy\n")
	var stdout, stderr bytes.Buffer

	if err := run([]string{"-root", root, "-o", out, "-dir", stage, "-binary", binary}, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}

	got := readZip(t, out)
	want := []string{"create-token/function.json", "handler", "host.json", "token-requests/function.json"}
	if !slices.Equal(names(got), want) {
		t.Fatalf("zip entries = %q, want %q", names(got), want)
	}
	if m := got["handler"].mode; m != 0o755 {
		t.Errorf("handler mode in zip = %v, want -rwxr-xr-x", m)
	}
	if string(got["handler"].data) != "#!/bin/sh\necho dummy\n" {
		t.Errorf("handler content = %q, want the -binary file", got["handler"].data)
	}
	for _, n := range want {
		if n != "handler" && got[n].mode != 0o644 {
			t.Errorf("%s mode = %v, want -rw-r--r--", n, got[n].mode)
		}
	}
	if string(got["host.json"].data) != hostJSON {
		t.Errorf("host.json changed in the zip: %s", got["host.json"].data)
	}
	if !strings.Contains(stderr.String(), "not an ELF executable") {
		t.Errorf("no warning for a -binary that is not a linux/amd64 executable; stderr: %q", stderr.String())
	}

	// The staged folder holds exactly the zip's files, with the same modes.
	var staged []string
	err := filepath.WalkDir(stage, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(stage, p)
		staged = append(staged, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		if wantMode := got[filepath.ToSlash(rel)].mode; info.Mode().Perm() != wantMode {
			t.Errorf("staged %s mode = %v, want %v", rel, info.Mode().Perm(), wantMode)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(staged)
	if !slices.Equal(staged, want) {
		t.Errorf("staged files = %q, want %q", staged, want)
	}

	// A second run replaces the staged folder rather than adding to it.
	write(t, filepath.Join(stage, "leftover.txt"), "old")
	if err := run([]string{"-root", root, "-o", out, "-dir", stage, "-binary", binary}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(stage, "leftover.txt")); !os.IsNotExist(err) {
		t.Errorf("leftover.txt survived re-staging (err %v)", err)
	}
}

func TestRefusesBadInput(t *testing.T) {
	binary := filepath.Join(t.TempDir(), "prebuilt")
	write(t, binary, "x")
	cases := []struct {
		name  string
		setup func(root string)
		args  func(root string) []string
		want  string
	}{
		{"no host.json", func(root string) { os.Remove(filepath.Join(root, "host.json")) }, nil, "host.json"},
		{"not a custom handler", func(root string) { write(t, filepath.Join(root, "host.json"), `{"version": "2.0"}`) }, nil, "no customHandler"},
		{"executable outside the app", func(root string) {
			write(t, filepath.Join(root, "host.json"), `{"customHandler": {"description": {"defaultExecutablePath": "../handler"}}}`)
		}, nil, "inside the app"},
		{"broken function.json", func(root string) { write(t, filepath.Join(root, "token-requests", "function.json"), `{"bindings": [`) }, nil, "token-requests/function.json"},
		{"function without bindings", func(root string) {
			write(t, filepath.Join(root, "token-requests", "function.json"), `{"bindings": []}`)
		}, nil, "no bindings"},
		{"no functions", func(root string) {
			os.RemoveAll(filepath.Join(root, "create-token"))
			os.RemoveAll(filepath.Join(root, "token-requests"))
		}, nil, "no function folders"},
		{"missing binary", nil, func(root string) []string {
			return []string{"-root", root, "-o", filepath.Join(root, "dist", "app.zip"), "-binary", filepath.Join(root, "nope")}
		}, "nope"},
		{"stage over the source", nil, func(root string) []string {
			return []string{"-root", root, "-o", filepath.Join(root, "dist", "app.zip"), "-binary", binary, "-dir", root}
		}, "app root"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := app(t)
			if c.setup != nil {
				c.setup(root)
			}
			args := []string{"-root", root, "-o", filepath.Join(root, "dist", "app.zip"), "-binary", binary}
			if c.args != nil {
				args = c.args(root)
			}
			err := run(args, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("run = %v, want an error containing %q", err, c.want)
			}
			if _, statErr := os.Stat(filepath.Join(root, "main.go")); statErr != nil {
				t.Errorf("source tree damaged: %v", statErr)
			}
		})
	}
}

// TestBuildsStaticLinuxBinary runs the real go build on a tiny module.
func TestBuildsStaticLinuxBinary(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatal("this test builds with the go command, which is not on PATH")
	}
	root := app(t)
	write(t, filepath.Join(root, "go.mod"), "module example.com/handler\n\ngo 1.22\n")
	write(t, filepath.Join(root, "main.go"), "package main\n\nfunc main() { println(\"hi\") }\n")
	out := filepath.Join(t.TempDir(), "app.zip")
	var stderr bytes.Buffer
	if err := run([]string{"-root", root, "-o", out}, io.Discard, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	got := readZip(t, out)
	h, ok := got["handler"]
	if !ok {
		t.Fatalf("no handler in %q", names(got))
	}
	if h.mode != 0o755 {
		t.Errorf("handler mode = %v, want -rwxr-xr-x", h.mode)
	}
	if problem := linuxAMD64(h.data); problem != "" {
		t.Errorf("handler %s", problem)
	}
	if bytes.Contains(h.data, []byte(root)) {
		t.Errorf("handler contains the build path %s: -trimpath missing", root)
	}
}

// TestPackagesThisRepository builds the real handler from the repository
// root and checks the package holds every function folder there.
func TestPackagesThisRepository(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the real handler; skipped with -short")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatal("this test builds with the go command, which is not on PATH")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	for _, need := range []string{"host.json", "main.go"} {
		if _, err := os.Stat(filepath.Join(root, need)); err != nil {
			t.Fatalf("the repository root has no %s (%v): the app's host.json and package main must exist there", need, err)
		}
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"handler", "host.json"}
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(root, e.Name(), "function.json")); err == nil && e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			want = append(want, e.Name()+"/function.json")
		}
	}
	slices.Sort(want)
	out := filepath.Join(t.TempDir(), "app.zip")
	var stderr bytes.Buffer
	if err := run([]string{"-root", root, "-o", out}, io.Discard, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	got := readZip(t, out)
	if !slices.Equal(names(got), want) {
		t.Errorf("zip entries = %q, want %q", names(got), want)
	}
	if got["handler"].mode != 0o755 {
		t.Errorf("handler mode = %v, want -rwxr-xr-x", got["handler"].mode)
	}
	if problem := linuxAMD64(got["handler"].data); problem != "" {
		t.Errorf("handler %s", problem)
	}
}

func TestIncludesExtraFiles(t *testing.T) {
	root := app(t)
	write(t, filepath.Join(root, "policy", "authz.json"), `{"version":1,"rules":[]}`)
	write(t, filepath.Join(root, "local.settings.json"), `{}`)
	out := filepath.Join(t.TempDir(), "app.zip")
	binary := filepath.Join(t.TempDir(), "prebuilt")
	write(t, binary, "bin")
	var stdout, stderr bytes.Buffer
	if err := run([]string{"-root", root, "-o", out, "-binary", binary, "-include", "policy/authz.json"}, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	got := readZip(t, out)
	if e, ok := got["policy/authz.json"]; !ok || e.mode != 0o644 || string(e.data) != `{"version":1,"rules":[]}` {
		t.Errorf("policy file not packaged as is: %q", names(got))
	}
	for _, bad := range []string{"local.settings.json", "../outside.json", "/etc/passwd", "host.json", "handler", "missing.json"} {
		if err := run([]string{"-root", root, "-o", out, "-binary", binary, "-include", bad}, &stdout, &stderr); err == nil {
			t.Errorf("-include %s accepted", bad)
		}
	}
}
