package profiles

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

//go:embed embedded/*.toml
var embeddedFS embed.FS

// Problem is one thing wrong with a profile, at a position in its file.
type Problem struct {
	File      string
	Line, Col int
	// Msg says what is wrong and what would be valid.
	Msg string
	// kind groups problems of one sort (the message's format) so that a
	// long array wrong in one way is reported a few times, not once per
	// element.
	kind string
}

// maxRepeats is how many problems of one kind a check lists before it
// summarises the rest in one line.
const maxRepeats = 5

// capRepeats keeps the first maxRepeats problems of each kind and replaces
// the rest by the first of them, saying how many more there are.
func capRepeats(ps Problems) Problems {
	count := map[string]int{}
	first := map[string]int{} // kind → index in out of its summary line
	out := make(Problems, 0, min(len(ps), 64))
	for _, p := range ps {
		k := p.kind
		if k == "" {
			k = p.Msg
		}
		count[k]++
		switch n := count[k]; {
		case n <= maxRepeats:
			out = append(out, p)
		case n == maxRepeats+1:
			first[k] = len(out)
			out = append(out, Problem{File: p.File, Line: p.Line, Col: p.Col, Msg: p.Msg, kind: k})
		}
	}
	for k, i := range first {
		out[i].Msg = fmt.Sprintf("%s (and %d more like it from here on, not listed)", out[i].Msg, count[k]-maxRepeats-1)
	}
	return out
}

func (p Problem) Error() string {
	if p.Line == 0 {
		return fmt.Sprintf("%s: %s", p.File, p.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Col, p.Msg)
}

// Problems is every problem found in a profile; it is the error Load returns
// for an invalid profile.
type Problems []Problem

func (ps Problems) Error() string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.Error()
	}
	return strings.Join(s, "\n")
}

// Embedded lists the names of the profiles built into fieldcon.
func Embedded() []string {
	entries, _ := embeddedFS.ReadDir("embedded")
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".toml"))
	}
	sort.Strings(names)
	return names
}

// Load reads a profile from a file path, or an embedded profile by name when
// no such file exists and the name has no path separator.
func Load(nameOrPath string) (*Profile, error) {
	data, err := os.ReadFile(nameOrPath)
	if err == nil {
		return Parse(nameOrPath, data)
	}
	if !strings.ContainsRune(nameOrPath, os.PathSeparator) && !strings.HasSuffix(nameOrPath, ".toml") {
		if data, eerr := embeddedFS.ReadFile(path.Join("embedded", nameOrPath+".toml")); eerr == nil {
			return Parse("embedded:"+nameOrPath, data)
		}
		return nil, fmt.Errorf("profile %q: no such file and no embedded profile of that name; embedded profiles: %s",
			nameOrPath, strings.Join(Embedded(), ", "))
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("profile %q: no such file; give the path of a TOML profile or the name of an embedded one (%s): %w",
			nameOrPath, strings.Join(Embedded(), ", "), err)
	}
	return nil, fmt.Errorf("profile %q: %w", nameOrPath, err)
}

// EmbeddedSource returns the TOML text of an embedded profile.
func EmbeddedSource(name string) ([]byte, error) {
	return embeddedFS.ReadFile(path.Join("embedded", name+".toml"))
}

// Parse decodes and validates a profile; file names it in errors.
func Parse(file string, data []byte) (*Profile, error) {
	if ps := textKindProblems(file, data); len(ps) > 0 {
		return nil, capRepeats(ps)
	}
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p Profile
	if err := dec.Decode(&p); err != nil {
		return nil, decodeProblems(file, data, err)
	}
	p.Source = file
	if p.Name == "" {
		base := filepath.Base(strings.TrimPrefix(file, "embedded:"))
		p.Name = strings.TrimSuffix(base, filepath.Ext(base))
	}
	idx, err := indexPositions(data)
	if err != nil {
		return nil, Problems{{File: file, Msg: err.Error()}}
	}
	v := &validator{file: file, idx: idx}
	v.profile(&p)
	if len(v.problems) > 0 {
		return nil, capRepeats(v.problems)
	}
	return &p, nil
}

// typeErrorRE matches go-toml's type mismatch, which names Go types.
var typeErrorRE = regexp.MustCompile(`^cannot decode TOML ([a-z ]+) into struct field \S+ of type (\S+)$`)

// plainTypeError says a type mismatch in the profile's terms: what the key
// holds and what it wants, not which Go struct field it failed to fill.
func plainTypeError(msg string) string {
	m := typeErrorRE.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	return fmt.Sprintf("this is %s; want %s", tomlKind(m[1]), wantedKind(m[2]))
}

func tomlKind(k string) string {
	switch k {
	case "integer", "array", "inline table":
		return "an " + k
	}
	return "a " + k
}

func wantedKind(goType string) string {
	switch {
	case goType == "string":
		return "a string in quotes"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "int") || strings.HasPrefix(goType, "uint"):
		return "an integer"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "[]string":
		return `an array of strings, e.g. ["a", "b"]`
	case strings.HasPrefix(goType, "[]"):
		return "an array (of tables: [[...]] or [{...}])"
	}
	return "a table"
}

// decodeProblems turns go-toml's errors into Problems with positions.
func decodeProblems(file string, data []byte, err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		var ps Problems
		for _, e := range strict.Errors {
			line, col := e.Position()
			key := strings.Join(e.Key(), ".")
			ps = append(ps, Problem{File: file, Line: line, Col: col, kind: "unknown key",
				Msg: fmt.Sprintf("unknown key %q; %s", key, validKeysHint(e.Key()))})
		}
		return capRepeats(ps)
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, col := de.Position()
		msg := plainTypeError(strings.TrimPrefix(de.Error(), "toml: "))
		if k := de.Key(); len(k) > 0 {
			msg = fmt.Sprintf("%s: %s", strings.Join(k, "."), msg)
		}
		return Problems{{File: file, Line: line, Col: col, Msg: msg}}
	}
	return Problems{{File: file, Msg: err.Error()}}
}
