package supervisor

import (
	"errors"
	"sync"
	"time"
)

// TicketTTL is how long a ticket is good for.
const TicketTTL = 30 * time.Second

// ErrBadTicket is returned for a ticket that is unknown, used, expired, or for
// another sandbox or action.
var ErrBadTicket = errors.New("invalid, expired or already used ticket")

// Ticket is a short-lived, single-use credential for a browser, which cannot set
// headers on a WebSocket: it stands for one key, on one sandbox, for one action.
type Ticket struct {
	KeyID     string
	SandboxID string
	Action    string
	ExpiresAt time.Time
}

// Tickets issues and redeems tickets. They live in memory: a restart voids them,
// which their lifetime makes harmless.
type Tickets struct {
	mu      sync.Mutex
	ttl     time.Duration
	tickets map[string]Ticket
	now     func() time.Time
}

// NewTickets returns an empty ticket book.
func NewTickets() *Tickets {
	return &Tickets{ttl: TicketTTL, tickets: map[string]Ticket{}, now: time.Now}
}

// SetTTL changes how long tickets issued from now on are good for.
func (t *Tickets) SetTTL(d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ttl = d
}

// Issue makes a ticket for key to do action on sandbox, and returns its secret.
func (t *Tickets) Issue(keyID, sandboxID, action string) (string, Ticket) {
	secret := "tkt_" + randomHex(24)
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	tk := Ticket{KeyID: keyID, SandboxID: sandboxID, Action: action, ExpiresAt: now.Add(t.ttl)}
	for s, old := range t.tickets { // forget the expired ones
		if now.After(old.ExpiresAt) {
			delete(t.tickets, s)
		}
	}
	t.tickets[secret] = tk
	return secret, tk
}

// Redeem uses up a ticket and returns it, if it is for action on sandbox and has
// not expired. A ticket is spent by any attempt, even a refused one.
func (t *Tickets) Redeem(secret, sandboxID, action string) (Ticket, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tk, ok := t.tickets[secret]
	delete(t.tickets, secret)
	if !ok || t.now().After(tk.ExpiresAt) || tk.SandboxID != sandboxID || tk.Action != action {
		return Ticket{}, ErrBadTicket
	}
	return tk, nil
}
