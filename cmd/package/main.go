// Command package builds the deployment package of the Functions app: a zip
// with host.json, every function folder's function.json and the custom
// handler binary, built for linux/amd64 (CGO_ENABLED=0, -trimpath, -s -w),
// with its Unix mode 0755 kept in the zip so the host can execute it, on
// whatever OS the zip was made. Nothing else goes in: no sources, no
// local.settings.json.
//
//	go run ./cmd/package -o dist/app.zip            build the handler, write the zip (azd deploys it)
//	go run ./cmd/package -o dist/app.zip -dir dist/app   also stage the same tree (for func start)
//	go run ./cmd/package -binary ./handler          package a binary built elsewhere
//
// Deploy the zip with `az functionapp deployment source config-zip --src
// dist/app.zip`, or run `func azure functionapp publish <app> --custom` in
// dist/app (without a local.settings.json, func needs --custom to know the
// worker runtime).
package main

import (
	"archive/zip"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "package:", err)
		os.Exit(1)
	}
}

// file is one entry of the package.
type file struct {
	name     string // slash-separated path in the zip
	data     []byte
	mode     fs.FileMode
	modified time.Time
}

func run(args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("package", flag.ContinueOnError)
	flags.SetOutput(stderr)
	root := flags.String("root", ".", "app root: the folder with host.json and the function folders")
	out := flags.String("o", "dist/app.zip", "zip file to write")
	dir := flags.String("dir", "", "also write the package's files into this folder (emptied first)")
	binary := flags.String("binary", "", "use this prebuilt handler binary instead of running go build")
	pkg := flags.String("pkg", ".", "Go package of the handler, relative to -root")
	var includes []string
	flags.Func("include", "an extra file to ship, relative to -root (repeatable), e.g. an AUTHZ_POLICY=@file policy", func(v string) error {
		includes = append(includes, v)
		return nil
	})
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flags.Args())
	}

	files, exe, err := appFiles(*root)
	if err != nil {
		return err
	}
	for _, inc := range includes {
		name := path.Clean(filepath.ToSlash(inc))
		if path.IsAbs(name) || name == "." || strings.HasPrefix(name, "../") || name == ".." || name == exe ||
			path.Base(name) == "local.settings.json" || slices.ContainsFunc(files, func(f file) bool { return f.name == name }) {
			return fmt.Errorf("-include %q: must be a file inside the app root, not the handler, local.settings.json or a file already packaged", inc)
		}
		f, err := readFile(filepath.Join(*root, filepath.FromSlash(name)), name, 0o644)
		if err != nil {
			return fmt.Errorf("-include: %w", err)
		}
		files = append(files, f)
	}
	var bin file
	if *binary != "" {
		bin, err = readFile(*binary, exe, 0o755)
		if err != nil {
			return err
		}
		if problem := linuxAMD64(bin.data); problem != "" {
			fmt.Fprintf(stderr, "package: warning: %s %s\n", *binary, problem)
		}
	} else {
		bin, err = build(*root, *pkg, exe, stderr)
		if err != nil {
			return err
		}
	}
	files = append(files, bin)

	if err := writeZip(*out, files); err != nil {
		return err
	}
	if *dir != "" {
		if err := writeDir(*dir, *root, files); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "wrote %s: host.json, %d function(s), %d extra file(s), %s (%d bytes, mode %v)\n",
		*out, len(files)-2-len(includes), len(includes), bin.name, len(bin.data), bin.mode)
	return nil
}

// appFiles reads host.json and every top-level folder that holds a
// function.json, and returns them with the executable's path in the package
// (host.json's customHandler.description.defaultExecutablePath).
func appFiles(root string) ([]file, string, error) {
	host, err := readFile(filepath.Join(root, "host.json"), "host.json", 0o644)
	if err != nil {
		return nil, "", err
	}
	var h struct {
		CustomHandler *struct {
			Description struct {
				DefaultExecutablePath string `json:"defaultExecutablePath"`
			} `json:"description"`
		} `json:"customHandler"`
	}
	if err := json.Unmarshal(host.data, &h); err != nil {
		return nil, "", fmt.Errorf("host.json: %w", err)
	}
	if h.CustomHandler == nil {
		return nil, "", errors.New("host.json has no customHandler section: not a custom handler app")
	}
	exe := h.CustomHandler.Description.DefaultExecutablePath
	if exe == "" {
		return nil, "", errors.New("host.json: customHandler.description.defaultExecutablePath is empty")
	}
	if exe = path.Clean(filepath.ToSlash(exe)); path.IsAbs(exe) || exe == "." || strings.HasPrefix(exe, "../") || exe == ".." {
		return nil, "", fmt.Errorf("host.json: defaultExecutablePath %q must be a path inside the app", exe)
	}

	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, "", err
	}
	files := []file{host}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || strings.HasPrefix(name, ".") {
			continue
		}
		f, err := readFile(filepath.Join(root, name, "function.json"), name+"/function.json", 0o644)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		var fn struct {
			Bindings []json.RawMessage `json:"bindings"`
		}
		if err := json.Unmarshal(f.data, &fn); err != nil {
			return nil, "", fmt.Errorf("%s: %w", f.name, err)
		}
		if len(fn.Bindings) == 0 {
			return nil, "", fmt.Errorf("%s: no bindings", f.name)
		}
		files = append(files, f)
	}
	if len(files) == 1 {
		return nil, "", fmt.Errorf("no function folders (a folder with function.json) in %s", root)
	}
	if slices.ContainsFunc(files, func(f file) bool { return f.name == exe }) {
		return nil, "", fmt.Errorf("defaultExecutablePath %q collides with another package file", exe)
	}
	return files, exe, nil
}

func readFile(src, name string, mode fs.FileMode) (file, error) {
	info, err := os.Stat(src)
	if err != nil {
		return file{}, err
	}
	if !info.Mode().IsRegular() {
		return file{}, fmt.Errorf("%s is not a regular file", src)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return file{}, err
	}
	return file{name: name, data: data, mode: mode, modified: info.ModTime()}, nil
}

// build compiles the handler for the Functions Linux workers: a static
// linux/amd64 binary without paths or symbol tables.
func build(root, pkg, exe string, stderr io.Writer) (file, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return file{}, fmt.Errorf("go build needs the go command: %w (or pass -binary)", err)
	}
	tmp, err := os.MkdirTemp("", "package-handler-")
	if err != nil {
		return file{}, err
	}
	defer os.RemoveAll(tmp)
	target := filepath.Join(tmp, path.Base(exe))
	cmd := exec.Command(goTool, "build", "-trimpath", "-ldflags=-s -w", "-o", target, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0")
	var msg bytes.Buffer
	cmd.Stdout = stderr
	cmd.Stderr = &msg
	if err := cmd.Run(); err != nil {
		return file{}, fmt.Errorf("go build %s in %s: %w\n%s", pkg, root, err, strings.TrimSpace(msg.String()))
	}
	f, err := readFile(target, exe, 0o755)
	if err != nil {
		return file{}, err
	}
	f.modified = time.Now()
	if problem := linuxAMD64(f.data); problem != "" {
		return file{}, fmt.Errorf("go build produced a binary that %s", problem)
	}
	return f, nil
}

// linuxAMD64 says what is wrong with data as a static linux/amd64
// executable, or "" when nothing is.
func linuxAMD64(data []byte) string {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return "is not an ELF executable"
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 || f.Class != elf.ELFCLASS64 {
		return fmt.Sprintf("is for %v, not x86-64", f.Machine)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Sprintf("is an ELF %v, not an executable", f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "is dynamically linked (build with CGO_ENABLED=0)"
		}
	}
	return ""
}

// writeZip writes files to out through a temporary file, so a failed run
// never leaves half a package behind.
func writeZip(out string, files []file) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".package-*.zip")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	zw := zip.NewWriter(tmp)
	for _, f := range files {
		h := &zip.FileHeader{Name: f.name, Method: zip.Deflate, Modified: f.modified}
		// SetMode records Unix permissions (creator "Unix", external
		// attributes), so the executable bit survives on any build OS.
		h.SetMode(f.mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			tmp.Close()
			return err
		}
		if _, err := w.Write(f.data); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := zw.Close(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}

// writeDir empties dir and writes files into it. It refuses a dir that is
// the app root or contains it, or that holds a go.mod, so a wrong flag
// cannot delete the source tree.
func writeDir(dir, root string, files []file) error {
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	absRoot, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	if rel, err := filepath.Rel(absDir, absRoot); err == nil && (rel == "." || !strings.HasPrefix(rel, "..")) {
		return fmt.Errorf("-dir %s is the app root or contains it", dir)
	}
	if _, err := os.Stat(filepath.Join(absDir, "go.mod")); err == nil {
		return fmt.Errorf("-dir %s holds a go.mod: refusing to empty it", dir)
	}
	if err := os.RemoveAll(absDir); err != nil {
		return err
	}
	for _, f := range files {
		target := filepath.Join(absDir, filepath.FromSlash(f.name))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(target, f.data, f.mode); err != nil {
			return err
		}
		// WriteFile's mode is masked by the umask; set it exactly.
		if err := os.Chmod(target, f.mode); err != nil {
			return err
		}
	}
	return nil
}
