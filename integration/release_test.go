package integration

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/latchgw/latch/integration/harness"
)

// TestMakeRelease: `make release` names each artifact by version, OS and
// architecture, lists them in SHA256SUMS (which sha256sum -c accepts), the
// Linux ones are static (no interpreter, no shared library), and the
// binary says its version and commit.
func TestMakeRelease(t *testing.T) {
	root, dir := harness.RepoRoot(), t.TempDir()
	const version = "v0.3.0-releasetest"
	cmd := exec.Command("make", "--no-print-directory", "release", "RELEASE_DIR="+dir,
		"PLATFORMS=linux/amd64 linux/arm64", "VERSION="+version)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}
	want := []string{"SHA256SUMS", "latch-" + version + "-linux-amd64", "latch-" + version + "-linux-arm64"}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("dist holds %v; want %v", got, want)
	}
	check := exec.Command("sha256sum", "-c", "SHA256SUMS")
	check.Dir = dir
	if out, err := check.CombinedOutput(); err != nil || strings.Count(string(out), ": OK") != 2 {
		t.Fatalf("sha256sum -c SHA256SUMS: %v\n%s", err, out)
	}
	for _, name := range want[1:] {
		f, err := elf.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		libs, _ := f.ImportedLibraries()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("%s is not static: it has a %v program header", name, p.Type)
			}
		}
		if len(libs) > 0 {
			t.Errorf("%s needs shared libraries %v", name, libs)
		}
		f.Close()
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		return
	}
	rev, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	// The go tool adds "dirty" and the commit's time where it stamps VCS
	// itself (a clone, not a worktree): "(revision R, 2026-12-08T01:29:02Z)".
	out, err := exec.Command(filepath.Join(dir, want[1]), "-version").Output()
	pattern := `^latch ` + regexp.QuoteMeta(version) + ` \(revision ` + strings.TrimSpace(string(rev)) + `( dirty)?(, [0-9TZ:-]+)?\) `
	if err != nil || !regexp.MustCompile(pattern).Match(out) {
		t.Fatalf("-version: %v: %s; want it to match %s", err, out, pattern)
	}
	t.Logf("%s", out)
}
