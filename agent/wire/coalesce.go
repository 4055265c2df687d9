package wire

import (
	"encoding/binary"
	"net"
)

// channelBuffer is the socket buffer asked for at each end of the agent
// channel (the kernel caps it at net.core.wmem_max and rmem_max): a large
// frame is then written whole while the other end still reads the last
// one, instead of the two taking turns.
const channelBuffer = 4 << 20

// ChannelConn readies a connection of the agent channel for yamux: large
// socket buffers, and a data frame's header and body in one write.
func ChannelConn(c net.Conn) net.Conn {
	if uc, ok := c.(*net.UnixConn); ok {
		_ = uc.SetWriteBuffer(channelBuffer)
		_ = uc.SetReadBuffer(channelBuffer)
	}
	return &coalescingConn{Conn: c}
}

// yamux frame header: version, type, flags (2), stream ID (4), length (4).
const (
	frameHeaderSize = 12
	frameTypeData   = 0
)

// coalescingConn joins each yamux data frame's header to its body in one
// write. yamux's send loop writes a frame's header and then its body with
// two calls, so that the peer may wake up for 12 bytes and then again for
// the body; here a data frame's header (which the body always follows at
// once) is held and written with the body in one vectored write.
// Only yamux's send loop writes, one write at a time.
type coalescingConn struct {
	net.Conn
	header [frameHeaderSize]byte
	held   bool
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	if c.held {
		c.held = false
		bufs := net.Buffers{c.header[:], p}
		if _, err := bufs.WriteTo(c.Conn); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if len(p) == frameHeaderSize && p[1] == frameTypeData && binary.BigEndian.Uint32(p[8:]) > 0 {
		copy(c.header[:], p)
		c.held = true
		return len(p), nil
	}
	return c.Conn.Write(p)
}
