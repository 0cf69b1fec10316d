package profiles

import "strings"

// rhcpSameKey checks, in a lab profile (every node on this machine), that a
// device reads the per-site key from where an RHCP server of the profile
// reads it. Otherwise every probe fails its HMAC and the device never gets
// its address; the check says so before the lab is built. Only the key's
// location is compared, never its contents.
func (v *validator) rhcpSameKey(path string, c *RHCPClient) {
	var servers []string
	for _, n := range v.p.Nodes {
		s := n.RHCPServer
		if s == nil {
			continue
		}
		if s.KeyFile == c.KeyFile && s.KeyEnv == c.KeyEnv {
			return
		}
		servers = append(servers, n.Name+" "+keyWhere(s.KeyFile, s.KeyEnv))
	}
	if len(servers) == 0 || c.KeyFile == "" && c.KeyEnv == "" {
		return // no server here, or no key at all (reported already)
	}
	at := path + ".key_file"
	if c.KeyFile == "" {
		at = path + ".key_env"
	}
	v.errorf(at, "the device reads the per-site key from %s but the RHCP server reads it from %s; in a lab every node must use the same key, or each probe fails its HMAC",
		keyWhere(c.KeyFile, c.KeyEnv), strings.Join(servers, ", "))
}

func keyWhere(file, env string) string {
	if file != "" {
		return "key_file " + file
	}
	return "key_env " + env
}
