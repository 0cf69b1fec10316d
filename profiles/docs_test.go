package profiles

import (
	"os"
	"strings"
	"testing"
)

// TestDocsListEveryKey keeps docs/profiles.md complete: every key of the Go
// types must appear in it as `dotted.path`.
func TestDocsListEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../docs/profiles.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range AllKeys() {
		if !strings.Contains(string(doc), "`"+k+"`") {
			t.Errorf("docs/profiles.md does not document the key `%s`", k)
		}
	}
}
