package profiles

import "regexp"

// profileNameRE keeps a profile's name usable as one path element: it names
// the state directory /var/lib/fieldcon/NAME (engine/site.DefaultStateDir),
// so "..", "/" or a leading "." would put a node's store somewhere else on
// the machine.
var profileNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// profileName checks the profile's name, given or taken from the file name.
func (v *validator) profileName(p *Profile) {
	if !profileNameRE.MatchString(p.Name) {
		v.errorf("name", "profile name %q is not valid; want 1–64 letters, digits, '.', '_' or '-', starting with a letter or digit (set name = \"...\" when the file name does not fit)", p.Name)
	}
}
