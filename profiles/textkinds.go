package profiles

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// textKindProblems finds values that are not strings where the profile wants
// an address, a prefix, a link end, an address:port or a duration. go-toml
// hands such a value's raw text (`5`, `true`) to the field's UnmarshalText
// and returns its error without a position; found here first, each gets its
// file:line:col like every other problem. It walks the document alongside
// the Profile type; keys it cannot place are left to the decoder (unknown
// keys) and TOML syntax errors likewise.
func textKindProblems(file string, data []byte) Problems {
	lines := newLineStarts(data)
	root := reflect.TypeFor[Profile]()
	var ps Problems
	var p unstable.Parser
	p.Reset(data)
	table, tableKey := root, ""
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table, tableKey = keyType(root, e.Key())
		case unstable.KeyValue:
			if table == nil {
				continue
			}
			t, key := keyType(table, e.Key())
			if t != nil {
				checkTextKinds(&ps, file, lines, join(tableKey, key), t, e.Value())
			}
		}
	}
	if p.Error() != nil {
		return nil // the decoder reports the syntax error with its position
	}
	return ps
}

// keyType follows a (dotted) key from t and returns the type it names.
func keyType(t reflect.Type, it unstable.Iterator) (reflect.Type, string) {
	var keys []string
	for it.Next() && t != nil {
		k := string(it.Node().Data)
		keys = append(keys, k)
		t = fieldType(t, k)
	}
	return t, strings.Join(keys, ".")
}

// fieldType returns the type of the field that key fills in t (the element
// type for arrays, as an array of tables' header names its last element),
// or nil when t has no such field.
func fieldType(t reflect.Type, key string) reflect.Type {
	if t = deref(t); !isTable(t) {
		return nil
	}
	if ft, ok := fieldsOf(t)[key]; ok {
		return deref(ft)
	}
	return nil
}

func isText(t reflect.Type) bool {
	return reflect.PointerTo(t).Implements(textUnmarshaler)
}

// checkTextKinds reports v (or what it contains) where t wants text and v is
// a number, a boolean or a date.
func checkTextKinds(ps *Problems, file string, lines lineStarts, key string, t reflect.Type, v *unstable.Node) {
	switch v.Kind {
	case unstable.Array:
		for it := v.Children(); it.Next(); {
			if n := it.Node(); n.Kind != unstable.Comment {
				checkTextKinds(ps, file, lines, key, t, n)
			}
		}
		return
	case unstable.InlineTable:
		for it := v.Children(); it.Next(); {
			kv := it.Node()
			if kv.Kind != unstable.KeyValue {
				continue
			}
			if ft, sub := keyType(t, kv.Key()); ft != nil {
				checkTextKinds(ps, file, lines, key+"."+sub, ft, kv.Value())
			}
		}
		return
	case unstable.String:
		return
	}
	if !isText(t) {
		return
	}
	what := map[unstable.Kind]string{unstable.Integer: "an integer", unstable.Float: "a number",
		unstable.Bool: "a boolean", unstable.DateTime: "a date-time", unstable.LocalDate: "a date",
		unstable.LocalDateTime: "a date-time", unstable.LocalTime: "a time"}[v.Kind]
	if what == "" {
		return
	}
	line, col := lines.position(int(v.Raw.Offset))
	*ps = append(*ps, Problem{File: file, Line: line, Col: col, kind: "text kind " + t.Name(),
		Msg: fmt.Sprintf("%s: this is %s; want %s", key, what, textHint(t))})
}

// textHint says what a text field holds, with an example in the profile's
// own ranges.
func textHint(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[Addr]():
		return `an IP address in quotes, e.g. "192.0.2.1" or "2001:db8::1"`
	case reflect.TypeFor[Prefix]():
		return `an address with prefix length in quotes, e.g. "192.0.2.0/24"`
	case reflect.TypeFor[Endpoint]():
		return `a link end in quotes, node:iface, e.g. "router:eth0"`
	case reflect.TypeFor[AddrPort]():
		return `an address and port in quotes, e.g. "192.0.2.1:4500" or "[2001:db8::1]:4500"`
	case reflect.TypeFor[Duration]():
		return `a duration in quotes with its unit, e.g. "30s" or "24h"`
	}
	return "a string in quotes"
}
