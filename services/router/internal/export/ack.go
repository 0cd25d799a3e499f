package export

import "sync/atomic"

// Ack waits for every part of one client request to be accepted by a backend. The
// request holds one reference from NewAck; each part it submits takes one more (Submit
// does, when it queues the part), and whoever holds a reference settles it exactly once:
// a backend's successful export call settles the parts of its batch, a hand-back passes
// them on with the batch (the router's re-split takes one per new part, then settles the
// old), a drop settles them as failed. Done is closed when the last reference is settled.
type Ack struct {
	refs   atomic.Int64
	failed atomic.Bool
	done   chan struct{}
}

// NewAck returns an Ack holding the request's own reference (settle it once every part
// is submitted).
func NewAck() *Ack {
	a := &Ack{done: make(chan struct{})}
	a.refs.Store(1)
	return a
}

// Done is closed once every reference was settled.
func (a *Ack) Done() <-chan struct{} { return a.done }

// Failed reports whether some part was settled as not delivered.
func (a *Ack) Failed() bool { return a.failed.Load() }

func (a *Ack) add() { a.refs.Add(1) }

func (a *Ack) settle(ok bool) {
	if !ok {
		a.failed.Store(true)
	}
	if a.refs.Add(-1) == 0 {
		close(a.done)
	}
}

// Hold takes one more reference on every ack (a part carrying them is kept elsewhere).
func Hold(acks []*Ack) {
	for _, a := range acks {
		a.add()
	}
}

// Settle settles one reference of every ack: ok means delivered (or passed on).
func Settle(acks []*Ack, ok bool) {
	for _, a := range acks {
		a.settle(ok)
	}
}
