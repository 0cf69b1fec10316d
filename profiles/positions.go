package profiles

import (
	"fmt"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// positions maps a value's path ("node[1].static.routes[0].via") to where it
// stands in the file, so validation errors after decoding can still name
// file:line:col. It keeps byte offsets and turns one into a line and column
// only when an error needs it: go-toml's Parser.Shape counts lines from the
// start of the file for every call, which made indexing a long array
// quadratic.
type positions struct {
	at    map[string]int
	lines lineStarts
}

// lineStarts holds the offset of the first byte of every line.
type lineStarts []int

func newLineStarts(data []byte) lineStarts {
	ls := lineStarts{0}
	for i, b := range data {
		if b == '\n' {
			ls = append(ls, i+1)
		}
	}
	return ls
}

// position returns the 1-based line and byte column of offset, as go-toml
// counts them.
func (ls lineStarts) position(offset int) (line, col int) {
	i := sort.Search(len(ls), func(i int) bool { return ls[i] > offset }) - 1
	if i < 0 {
		i = 0
	}
	return i + 1, offset - ls[i] + 1
}

// lookup returns the position of path, or of its nearest recorded parent.
func (p positions) lookup(path string) (line, col int) {
	for path != "" {
		if off, ok := p.at[path]; ok {
			return p.lines.position(off)
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0, 0
}

func indexPositions(data []byte) (positions, error) {
	idx := positions{at: map[string]int{}, lines: newLineStarts(data)}
	arrays := map[string]int{} // resolved array-of-tables path → count
	var p unstable.Parser
	p.Reset(data)
	current := ""
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			keys, first := keyParts(e.Key())
			current = resolve(arrays, keys, e.Kind == unstable.ArrayTable)
			if first != nil {
				idx.at[current] = int(first.Raw.Offset)
			}
		case unstable.KeyValue:
			keys, first := keyParts(e.Key())
			path := join(current, strings.Join(keys, "."))
			if first != nil {
				idx.at[path] = int(first.Raw.Offset)
			}
			idx.value(path, e.Value())
		}
	}
	if err := p.Error(); err != nil {
		return idx, fmt.Errorf("not valid TOML: %w", err)
	}
	return idx, nil
}

// value records the positions of a value and of what it contains.
func (idx positions) value(path string, v *unstable.Node) {
	if v.Raw.Length > 0 {
		idx.at[path] = int(v.Raw.Offset)
	}
	switch v.Kind {
	case unstable.Array:
		i := 0
		for it := v.Children(); it.Next(); {
			n := it.Node()
			if n.Kind == unstable.Comment {
				continue
			}
			idx.value(fmt.Sprintf("%s[%d]", path, i), n)
			i++
		}
	case unstable.InlineTable:
		for it := v.Children(); it.Next(); {
			kv := it.Node()
			if kv.Kind != unstable.KeyValue {
				continue
			}
			keys, first := keyParts(kv.Key())
			sub := join(path, strings.Join(keys, "."))
			if first != nil {
				idx.at[sub] = int(first.Raw.Offset)
			}
			idx.value(sub, kv.Value())
		}
	}
}

func keyParts(it unstable.Iterator) ([]string, *unstable.Node) {
	var keys []string
	var first *unstable.Node
	for it.Next() {
		n := it.Node()
		if first == nil {
			first = n
		}
		keys = append(keys, string(n.Data))
	}
	return keys, first
}

// resolve turns a table header's keys into an indexed path: a key that names
// an array of tables refers to its last element; the header of a new array
// element ([[x]]) gets the next index.
func resolve(arrays map[string]int, keys []string, arrayTable bool) string {
	path := ""
	for i, k := range keys {
		path = join(path, k)
		if i == len(keys)-1 && arrayTable {
			n := arrays[path]
			arrays[path] = n + 1
			path = fmt.Sprintf("%s[%d]", path, n)
		} else if n, ok := arrays[path]; ok {
			path = fmt.Sprintf("%s[%d]", path, n-1)
		}
	}
	return path
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}
