// Package profiles loads and validates site profiles: TOML files that name a
// site's nodes, the roles each runs with their settings, and optionally a
// [lab] topology to build the site in network namespaces. Decoding is strict
// and every error names file:line:column, what is wrong and what would be
// valid; a profile that does not validate is never applied.
package profiles
