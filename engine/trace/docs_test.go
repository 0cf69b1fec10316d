package trace

import (
	"os"
	"strings"
	"testing"
)

// TestDocsListEveryFilterWord keeps docs/trace.md's filter table complete:
// every protocol word and every field the parser accepts is written there
// in backticks, so an engineer can find it without reading filter.go.
func TestDocsListEveryFilterWord(t *testing.T) {
	doc, err := os.ReadFile("../../docs/trace.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	for word := range protocols {
		if !strings.Contains(text, "`"+word+"`") {
			t.Errorf("docs/trace.md does not list the protocol word `%s`", word)
		}
	}
	for name := range FilterFields() {
		if !strings.Contains(text, "`"+name) {
			t.Errorf("docs/trace.md does not list the field `%s`", name)
		}
	}
	for _, op := range []string{"and", "or", "not"} {
		if !strings.Contains(text, "`"+op+"`") {
			t.Errorf("docs/trace.md does not mention `%s`", op)
		}
	}
}
