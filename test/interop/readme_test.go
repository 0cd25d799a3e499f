package interop

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEShowsTheInteropYAML checks that the README shows testdata/<name> verbatim
// in a yaml block right after the marker <!-- interop: <name> -->.
func TestREADMEShowsTheInteropYAML(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"collector.yaml", "supervisor.yaml"} {
		want, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		marker := "<!-- interop: " + name + " -->\n```yaml\n"
		_, rest, ok := strings.Cut(string(readme), marker)
		if !ok {
			t.Errorf("README.md has no %q followed by a yaml block", strings.TrimSpace(marker))
			continue
		}
		got, _, ok := strings.Cut(rest, "```\n")
		if !ok || got != string(want) {
			t.Errorf("README.md's %s block differs from test/interop/testdata/%s (copy the file into the README)", name, name)
		}
	}
}
