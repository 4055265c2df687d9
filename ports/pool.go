package ports

import (
	"context"
	"net"
	"sync"

	"github.com/bothy/bothy/agent"
)

// pool keeps one transport per agent connection and port, so that
// connections to a sandbox's server are kept alive between proxied
// requests. A transport lives as long as its agent connection: when the
// sandbox stops or bothy reconnects, its transports close and go.
type pool struct {
	mu sync.Mutex
	// byConn holds the transports of each agent connection, by port.
	byConn map[*agent.Conn]map[int]*transport
}

// transport answers the transport to port through conn, making it at first use.
func (p *pool) transport(conn *agent.Conn, port int, dial func(context.Context) (net.Conn, error)) *transport {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t := p.byConn[conn][port]; t != nil {
		return t
	}
	t := &transport{conn: conn, port: port, dial: dial}
	if p.byConn == nil {
		p.byConn = map[*agent.Conn]map[int]*transport{}
	}
	ports := p.byConn[conn]
	if ports == nil {
		ports = map[int]*transport{}
		p.byConn[conn] = ports
		go p.forget(conn)
	}
	ports[port] = t
	return t
}

// forget closes and drops conn's transports once conn has ended.
func (p *pool) forget(conn *agent.Conn) {
	<-conn.Done()
	p.mu.Lock()
	ports := p.byConn[conn]
	delete(p.byConn, conn)
	p.mu.Unlock()
	for _, t := range ports {
		t.CloseIdleConnections()
	}
}
