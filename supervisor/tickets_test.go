package supervisor

import (
	"errors"
	"testing"
	"time"
)

func TestTickets(t *testing.T) {
	tb := NewTickets()
	now := time.Now()
	tb.now = func() time.Time { return now }

	s, _ := tb.Issue("key_a", "sb-1", "pty")
	if tk, err := tb.Redeem(s, "sb-1", "pty"); err != nil || tk.KeyID != "key_a" {
		t.Fatalf("redeem: %+v %v", tk, err)
	}
	if _, err := tb.Redeem(s, "sb-1", "pty"); !errors.Is(err, ErrBadTicket) {
		t.Fatal("a ticket was used twice")
	}
	s, _ = tb.Issue("key_a", "sb-1", "pty")
	if _, err := tb.Redeem(s, "sb-2", "pty"); !errors.Is(err, ErrBadTicket) {
		t.Fatal("a ticket opened another sandbox")
	}
	if _, err := tb.Redeem(s, "sb-1", "pty"); !errors.Is(err, ErrBadTicket) {
		t.Fatal("a refused ticket stayed usable")
	}
	s, _ = tb.Issue("key_a", "sb-1", "pty")
	if _, err := tb.Redeem(s, "sb-1", "files"); !errors.Is(err, ErrBadTicket) {
		t.Fatal("a ticket did another action")
	}
	s, _ = tb.Issue("key_a", "sb-1", "pty")
	now = now.Add(TicketTTL + time.Second)
	if _, err := tb.Redeem(s, "sb-1", "pty"); !errors.Is(err, ErrBadTicket) {
		t.Fatal("an expired ticket worked")
	}
	if _, err := tb.Redeem("tkt_made_up", "sb-1", "pty"); !errors.Is(err, ErrBadTicket) {
		t.Fatal("a made-up ticket worked")
	}
}
