package profiles

import (
	"encoding"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

var textUnmarshaler = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()

// deref strips pointers and slices to the element type.
func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	return t
}

// isTable reports whether t decodes from a TOML table (a struct that is not
// a scalar type with its own text form).
func isTable(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && !reflect.PointerTo(t).Implements(textUnmarshaler)
}

// fieldsOf lists a struct type's TOML keys and their types.
func fieldsOf(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// validKeysHint says which keys are valid in the table that holds key.
func validKeysHint(key []string) string {
	t := reflect.TypeOf(Profile{})
	for _, k := range key[:len(key)-1] {
		ft, ok := fieldsOf(t)[k]
		if !ok || !isTable(deref(ft)) {
			return "see docs/profiles.md for the valid keys"
		}
		t = deref(ft)
	}
	var names []string
	for n := range fieldsOf(t) {
		names = append(names, n)
	}
	sort.Strings(names)
	where := "at the top level"
	if len(key) > 1 {
		where = "in [" + strings.Join(key[:len(key)-1], ".") + "]"
	}
	return fmt.Sprintf("valid keys %s: %s", where, strings.Join(names, ", "))
}

// AllKeys lists every key a profile can have, as dotted paths
// ("node.static.addresses.iface"), for documentation completeness checks.
func AllKeys() []string {
	var out []string
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for name, ft := range fieldsOf(t) {
			p := name
			if prefix != "" {
				p = prefix + "." + name
			}
			out = append(out, p)
			if et := deref(ft); isTable(et) {
				walk(p, et)
			}
		}
	}
	walk("", reflect.TypeOf(Profile{}))
	sort.Strings(out)
	return out
}

// RoleKeys lists the role sections a node has set (their TOML keys), found
// by reflection so that a new role needs no change here.
func RoleKeys(n *Node) []string {
	var out []string
	v := reflect.ValueOf(n).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Type.Kind() != reflect.Pointer || !isTable(f.Type.Elem()) || v.Field(i).IsNil() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		out = append(out, name)
	}
	return out
}
