package profiles

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// longArrays are profiles with one array of n elements, each element wrong
// in the same way, so both the position index and the error path run n
// times.
var longArrays = []struct {
	name string
	src  func(n int) string
}{
	{"mechanisms", func(n int) string {
		var b strings.Builder
		b.WriteString("[[node]]\nname = \"d\"\nmechanisms = [")
		for i := 0; i < n; i++ {
			b.WriteString("\"rhcp\", ")
		}
		b.WriteString("]\n")
		return b.String()
	}},
	{"routes", func(n int) string {
		var b strings.Builder
		b.WriteString("[[node]]\nname = \"d\"\n[node.static]\nroutes = [\n")
		for i := 0; i < n; i++ {
			b.WriteString("  { dst = \"192.0.2.1/24\", dev = \"eth0\" },\n")
		}
		b.WriteString("]\n")
		return b.String()
	}},
}

// parseTime is the best of three runs of Parse on src: the least disturbed
// by other work on the machine.
func parseTime(t testing.TB, src string) (time.Duration, error) {
	t.Helper()
	best := time.Duration(1<<63 - 1)
	var err error
	for i := 0; i < 3; i++ {
		start := time.Now()
		_, err = Parse("x.toml", []byte(src))
		if d := time.Since(start); d < best {
			best = d
		}
	}
	return best, err
}

// TestCheckTimeIsLinear checks that checking a profile grows linearly with
// the length of its arrays: ten times the elements may take about ten times
// as long, not a hundred (a position lookup that scans the file from the
// start for every element made it quadratic).
func TestCheckTimeIsLinear(t *testing.T) {
	if testing.Short() {
		t.Skip("times 200,000-element profiles")
	}
	for _, tt := range longArrays {
		t.Run(tt.name, func(t *testing.T) {
			small, err := parseTime(t, tt.src(20000))
			if err == nil {
				t.Fatal("Parse accepted a profile with 20,000 wrong elements")
			}
			large, _ := parseTime(t, tt.src(200000))
			ratio := float64(large) / float64(small)
			t.Logf("20,000 elements: %v, 200,000 elements: %v, ratio %.1f", small, large, ratio)
			// Linear is a ratio of about 10; quadratic about 100. 35
			// leaves room for garbage collection and a busy machine.
			if ratio > 35 {
				t.Errorf("10× the elements took %.1f× as long (%v → %v); want about 10× (linear)", ratio, small, large)
			}
		})
	}
}

func BenchmarkParseLongArray(b *testing.B) {
	for _, tt := range longArrays {
		for _, n := range []int{20000, 200000} {
			src := tt.src(n)
			b.Run(fmt.Sprintf("%s/%d", tt.name, n), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					Parse("x.toml", []byte(src))
				}
			})
		}
	}
}

// TestLongArraysCapped checks that a profile with the same mistake 200,000
// times reports the first ones with positions and then says how many more
// there are, instead of printing 200,000 lines.
func TestLongArraysCapped(t *testing.T) {
	for _, tt := range longArrays {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("x.toml", []byte(tt.src(200000)))
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("Parse = %v, want Problems", err)
			}
			if len(ps) > 3*(maxRepeats+1) {
				t.Fatalf("%d problems reported; want at most %d of each kind and a summary line", len(ps), maxRepeats)
			}
			msg := err.Error()
			if !strings.Contains(msg, "more like it") {
				t.Errorf("no summary of the problems left out in:\n%s", msg)
			}
			for _, p := range ps {
				if p.Line == 0 {
					t.Errorf("problem without a position: %v", p)
				}
			}
		})
	}
}
