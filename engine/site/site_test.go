package site

import (
	"reflect"
	"strings"
	"testing"

	"github.com/fieldcon/fieldcon/drivers/fake"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/profiles"
)

// TestEveryEmbeddedProfileBuilds builds each embedded profile's site on fake
// hosts: every node gets a host in its lab namespace, a store, and one role
// per profile section (mechanisms wrapped by the arbiter).
func TestEveryEmbeddedProfileBuilds(t *testing.T) {
	for _, name := range profiles.Embedded() {
		t.Run(name, func(t *testing.T) {
			p, err := profiles.Load(name)
			if err != nil {
				t.Fatal(err)
			}
			var opened []string
			s, err := Build(p, Options{
				Netns: func(node string) string { return "fc-t-" + node },
				OpenHost: func(netns string) (engine.Host, error) {
					opened = append(opened, netns)
					return fake.NewHost(netns, nil, "eth0"), nil
				},
				StateDir: t.TempDir(),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if len(opened) != len(p.Nodes) || !strings.HasPrefix(opened[0], "fc-t-") {
				t.Fatalf("opened hosts %v for %d nodes", opened, len(p.Nodes))
			}
			for i := range p.Nodes {
				n := &p.Nodes[i]
				roles, err := Roles(p, n)
				if err != nil {
					t.Fatal(err)
				}
				if len(n.Mechanisms) == 0 && len(roles) != len(profiles.RoleKeys(n)) {
					t.Errorf("node %s: %d roles for sections %v", n.Name, len(roles), profiles.RoleKeys(n))
				}
			}
		})
	}
}

// TestEveryRoleSectionIsBuilt fails when a profile section is added to
// profiles.Node without a case in Roles.
func TestEveryRoleSectionIsBuilt(t *testing.T) {
	var n profiles.Node
	v := reflect.ValueOf(&n).Elem()
	sections := 0
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		if f.Kind() != reflect.Pointer || f.Type().Elem().Kind() != reflect.Struct {
			continue
		}
		f.Set(reflect.New(f.Type().Elem()))
		sections++
	}
	roles, err := Roles(&profiles.Profile{Name: "t"}, &n)
	if err != nil {
		t.Fatal(err)
	}
	if len(roles) != sections {
		var kinds []string
		for _, r := range roles {
			kinds = append(kinds, r.Kind())
		}
		t.Fatalf("%d profile sections but Roles built %d: %v", sections, len(roles), kinds)
	}
}

func TestBuildUnknownNode(t *testing.T) {
	p, err := profiles.Load("demo")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Build(p, Options{Nodes: []string{"ghost"}, OpenHost: func(string) (engine.Host, error) { return fake.NewHost("x", nil), nil }})
	if err == nil || !strings.Contains(err.Error(), "ghost") || !strings.Contains(err.Error(), "server, router, device") {
		t.Fatalf("Build with an unknown node: %v, want an error naming it and the nodes as a list", err)
	}
}
