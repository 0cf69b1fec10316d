package tunnel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Message types (docs/protocols/tunnel.md "Common header").
const (
	TypeRequest   byte = 1 // establishment request, Noise IK message 1
	TypeResponse  byte = 2 // establishment response, Noise IK message 2
	TypeCookie    byte = 3 // cookie reply
	TypeData      byte = 4
	TypeHeartbeat byte = 5
	TypeClose     byte = 6
)

// Version is the only wire version this package speaks.
const Version byte = 1

// Sizes of the fixed-size messages and parts.
const (
	headerLen        = 4
	macLen           = 16
	requestNoiseLen  = 32 + 32 + 16 + requestPayloadLen + 16
	responseNoiseLen = 32 + responsePayloadLen + 16
	// RequestLen is the size of an establishment request.
	RequestLen = headerLen + 4 + requestNoiseLen + 2*macLen
	// ResponseLen is the size of an establishment response.
	ResponseLen = headerLen + 8 + responseNoiseLen + 2*macLen
	// CookieLen is the size of a cookie reply.
	CookieLen = headerLen + 4 + 24 + 16 + 16
	// TransportOverhead is what a data message adds to the IP packet.
	TransportOverhead  = transportHeaderLen + 16
	transportHeaderLen = headerLen + 4 + 8

	requestPayloadLen  = 12
	responsePayloadLen = 16
)

// Errors of the codec; receivers count drops by them.
var (
	ErrTruncated = errors.New("tunnel: message truncated")
	ErrMalformed = errors.New("tunnel: malformed message")
)

// Request is a parsed establishment request. Its slices alias the datagram.
type Request struct {
	Sender uint32
	Noise  []byte // Noise IK message 1
	MAC1   []byte
	MAC2   []byte
}

// Response is a parsed establishment response. Sender is the tunnel index.
type Response struct {
	Sender, Receiver uint32
	Noise            []byte
	MAC1, MAC2       []byte
}

// CookieReply is a parsed cookie reply.
type CookieReply struct {
	Receiver uint32
	Nonce    []byte // 24
	Sealed   []byte // 32: encrypted cookie and tag
}

// Transport is a parsed data, heartbeat or close message. Header is the 16
// bytes of associated data; Sealed the ciphertext with its tag.
type Transport struct {
	Type     byte
	Receiver uint32
	Counter  uint64
	Header   []byte
	Sealed   []byte
}

// MessageType checks the common header and returns the type. It never
// allocates; every receiver calls it first.
func MessageType(b []byte) (byte, error) {
	if len(b) < headerLen {
		return 0, ErrTruncated
	}
	if b[1] != Version || b[2] != 0 || b[3] != 0 {
		return 0, fmt.Errorf("%w: version %d reserved %#x", ErrMalformed, b[1], binary.BigEndian.Uint16(b[2:4]))
	}
	want, ok := fixedLen[b[0]]
	switch {
	case !ok:
		return 0, fmt.Errorf("%w: unknown type %d", ErrMalformed, b[0])
	case want > 0 && len(b) < want:
		return 0, ErrTruncated
	case want > 0 && len(b) > want:
		return 0, fmt.Errorf("%w: type %d is %d bytes, want %d", ErrMalformed, b[0], len(b), want)
	case want == 0 && len(b) < TransportOverhead:
		return 0, ErrTruncated
	}
	return b[0], nil
}

// fixedLen is each type's exact size; 0 for transport messages (at least
// TransportOverhead).
var fixedLen = map[byte]int{
	TypeRequest: RequestLen, TypeResponse: ResponseLen, TypeCookie: CookieLen,
	TypeData: 0, TypeHeartbeat: 0, TypeClose: 0,
}

func putHeader(b []byte, typ byte) {
	b[0], b[1], b[2], b[3] = typ, Version, 0, 0
}

// ParseRequest parses an establishment request.
func ParseRequest(b []byte) (Request, error) {
	if t, err := MessageType(b); err != nil {
		return Request{}, err
	} else if t != TypeRequest {
		return Request{}, fmt.Errorf("%w: type %d is not a request", ErrMalformed, t)
	}
	off := headerLen + 4 + requestNoiseLen
	return Request{
		Sender: binary.BigEndian.Uint32(b[4:8]),
		Noise:  b[8:off],
		MAC1:   b[off : off+macLen],
		MAC2:   b[off+macLen : off+2*macLen],
	}, nil
}

// AppendRequest appends a request with zero MACs; the caller fills them
// with sealMACs.
func AppendRequest(dst []byte, sender uint32, noiseMsg []byte) ([]byte, error) {
	if len(noiseMsg) != requestNoiseLen {
		return nil, fmt.Errorf("tunnel: noise message 1 is %d bytes, want %d", len(noiseMsg), requestNoiseLen)
	}
	var h [8]byte
	putHeader(h[:], TypeRequest)
	binary.BigEndian.PutUint32(h[4:], sender)
	dst = append(dst, h[:]...)
	dst = append(dst, noiseMsg...)
	return append(dst, make([]byte, 2*macLen)...), nil
}

// ParseResponse parses an establishment response.
func ParseResponse(b []byte) (Response, error) {
	if t, err := MessageType(b); err != nil {
		return Response{}, err
	} else if t != TypeResponse {
		return Response{}, fmt.Errorf("%w: type %d is not a response", ErrMalformed, t)
	}
	off := headerLen + 8 + responseNoiseLen
	return Response{
		Sender:   binary.BigEndian.Uint32(b[4:8]),
		Receiver: binary.BigEndian.Uint32(b[8:12]),
		Noise:    b[12:off],
		MAC1:     b[off : off+macLen],
		MAC2:     b[off+macLen : off+2*macLen],
	}, nil
}

// AppendResponse appends a response with zero MACs.
func AppendResponse(dst []byte, sender, receiver uint32, noiseMsg []byte) ([]byte, error) {
	if len(noiseMsg) != responseNoiseLen {
		return nil, fmt.Errorf("tunnel: noise message 2 is %d bytes, want %d", len(noiseMsg), responseNoiseLen)
	}
	var h [12]byte
	putHeader(h[:], TypeResponse)
	binary.BigEndian.PutUint32(h[4:], sender)
	binary.BigEndian.PutUint32(h[8:], receiver)
	dst = append(dst, h[:]...)
	dst = append(dst, noiseMsg...)
	return append(dst, make([]byte, 2*macLen)...), nil
}

// ParseCookieReply parses a cookie reply.
func ParseCookieReply(b []byte) (CookieReply, error) {
	if t, err := MessageType(b); err != nil {
		return CookieReply{}, err
	} else if t != TypeCookie {
		return CookieReply{}, fmt.Errorf("%w: type %d is not a cookie reply", ErrMalformed, t)
	}
	return CookieReply{Receiver: binary.BigEndian.Uint32(b[4:8]), Nonce: b[8:32], Sealed: b[32:64]}, nil
}

// ParseTransport parses a data, heartbeat or close message.
func ParseTransport(b []byte) (Transport, error) {
	t, err := MessageType(b)
	if err != nil {
		return Transport{}, err
	}
	if fixedLen[t] != 0 {
		return Transport{}, fmt.Errorf("%w: type %d is not a transport message", ErrMalformed, t)
	}
	return Transport{
		Type:     t,
		Receiver: binary.BigEndian.Uint32(b[4:8]),
		Counter:  binary.BigEndian.Uint64(b[8:16]),
		Header:   b[:transportHeaderLen],
		Sealed:   b[transportHeaderLen:],
	}, nil
}

// putTransportHeader writes the 16-byte transport header into b.
func putTransportHeader(b []byte, typ byte, receiver uint32, counter uint64) {
	putHeader(b, typ)
	binary.BigEndian.PutUint32(b[4:8], receiver)
	binary.BigEndian.PutUint64(b[8:16], counter)
}

// RequestPayload is the establishment request's encrypted payload.
type RequestPayload struct {
	// Timestamp (unix nanoseconds) must grow from one request of a client
	// to the next; the server drops the others as replays.
	Timestamp uint64
}

func (p RequestPayload) marshal() []byte {
	b := make([]byte, requestPayloadLen)
	binary.BigEndian.PutUint64(b, p.Timestamp)
	return b
}

func parseRequestPayload(b []byte) (RequestPayload, error) {
	if len(b) != requestPayloadLen {
		return RequestPayload{}, fmt.Errorf("%w: request payload is %d bytes", ErrMalformed, len(b))
	}
	return RequestPayload{Timestamp: binary.BigEndian.Uint64(b)}, nil
}

// Assignment is the establishment response's payload: the virtual NIC's
// address, mask and gateway and the server's timers.
type Assignment struct {
	Address   netip.Prefix // virtual address with the pool's prefix length
	Gateway   netip.Addr
	Heartbeat uint16 // seconds; 0 = the client's own setting
	Idle      uint16 // seconds until the server ages a silent tunnel
	MTU       uint16
}

func (a Assignment) marshal() ([]byte, error) {
	if !a.Address.Addr().Is4() || !a.Gateway.Is4() {
		return nil, fmt.Errorf("tunnel: assignment needs IPv4 addresses, have %s gateway %s", a.Address, a.Gateway)
	}
	b := make([]byte, responsePayloadLen)
	ip := a.Address.Addr().As4()
	copy(b[0:4], ip[:])
	b[4] = byte(a.Address.Bits())
	binary.BigEndian.PutUint16(b[6:8], a.Heartbeat)
	gw := a.Gateway.As4()
	copy(b[8:12], gw[:])
	binary.BigEndian.PutUint16(b[12:14], a.Idle)
	binary.BigEndian.PutUint16(b[14:16], a.MTU)
	return b, nil
}

// ParseAssignment decodes an establishment response payload.
func ParseAssignment(b []byte) (Assignment, error) {
	if len(b) != responsePayloadLen {
		return Assignment{}, fmt.Errorf("%w: response payload is %d bytes", ErrMalformed, len(b))
	}
	if b[4] > 32 || b[5] != 0 {
		return Assignment{}, fmt.Errorf("%w: prefix length %d", ErrMalformed, b[4])
	}
	a := Assignment{
		Address:   netip.PrefixFrom(netip.AddrFrom4([4]byte(b[0:4])), int(b[4])),
		Heartbeat: binary.BigEndian.Uint16(b[6:8]),
		Gateway:   netip.AddrFrom4([4]byte(b[8:12])),
		Idle:      binary.BigEndian.Uint16(b[12:14]),
		MTU:       binary.BigEndian.Uint16(b[14:16]),
	}
	if !a.Address.Masked().Contains(a.Gateway) {
		return Assignment{}, fmt.Errorf("%w: gateway %s is outside %s", ErrMalformed, a.Gateway, a.Address.Masked())
	}
	return a, nil
}
