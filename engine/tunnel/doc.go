// Package tunnel is the TN tunnel (DESIGN.md §5): a client behind NAT gets a
// TUN virtual NIC and one UDP flow to a tunnel server, which strips the tunnel
// header, forwards with source NAT and maps replies back by tunnel index.
// The wire format is docs/protocols/tunnel.md; the handshake is Noise IK
// (github.com/flynn/noise), the transport ChaCha20-Poly1305.
package tunnel
