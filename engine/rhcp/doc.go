// Package rhcp implements RHCP, remote host configuration (DESIGN.md §1, spec
// CN102244689A): a server allocates a maintenance address to a device it knows
// by ID and probes that address until the device, which sees the probe on its
// point-to-point link before it owns the address, configures it and answers
// with a stop indication. The wire format is in docs/protocols/rhcp.md; the
// codec and the state machines here are pure, the roles (rhcp_server,
// access_router, rhcp_client, dnsmasq) do the I/O through engine.Host.
package rhcp
