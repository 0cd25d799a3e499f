package sampling

import (
	"bytes"

	"github.com/otelfleet/otelfleet/pkg/tracesample"
)

// traceState is what Decide reads of a W3C tracestate: the OpenTelemetry "ot" member's
// th and rv sub-keys.
type traceState struct {
	// otStart and otEnd delimit the first ot member's value; otStart < 0 when absent.
	otStart, otEnd int
	th, rv         uint64
	hasTh, hasRv   bool
	// thBad and rvBad report a malformed value (ignored, and left out on rewrite).
	thBad, rvBad bool
}

var otKey = []byte("ot=")

// nextMember returns the list member that starts at ts[off:] with optional white space
// trimmed, and where the next one starts.
func nextMember(ts []byte, off int) (start, end, next int) {
	end = bytes.IndexByte(ts[off:], ',')
	if end < 0 {
		end, next = len(ts), len(ts)
	} else {
		end += off
		next = end + 1
	}
	start = off
	for start < end && isOWS(ts[start]) {
		start++
	}
	for end > start && isOWS(ts[end-1]) {
		end--
	}
	return start, end, next
}

func isOWS(c byte) bool { return c == ' ' || c == '\t' }

// nextSubKey returns the ot sub-key at v[off:end] ("key:value") and where the next one
// starts.
func nextSubKey(v []byte, off, end int) (start, stop, next int) {
	i := bytes.IndexByte(v[off:end], ';')
	if i < 0 {
		return off, end, end
	}
	return off, off + i, off + i + 1
}

func parseTraceState(ts []byte) traceState {
	st := traceState{otStart: -1}
	for off := 0; off < len(ts); {
		start, end, next := nextMember(ts, off)
		off = next
		if !bytes.HasPrefix(ts[start:end], otKey) {
			continue
		}
		st.otStart, st.otEnd = start+len(otKey), end
		break
	}
	if st.otStart < 0 {
		return st
	}
	for off := st.otStart; off < st.otEnd; {
		start, stop, next := nextSubKey(ts, off, st.otEnd)
		off = next
		sub := ts[start:stop]
		switch {
		case len(sub) >= 3 && sub[0] == 't' && sub[1] == 'h' && sub[2] == ':':
			if st.hasTh || st.thBad {
				continue // the first th counts
			}
			if v, err := tracesample.ParseThreshold(sub[3:]); err == nil {
				st.th, st.hasTh = v, true
			} else {
				st.thBad = true
			}
		case len(sub) >= 3 && sub[0] == 'r' && sub[1] == 'v' && sub[2] == ':':
			if st.hasRv || st.rvBad {
				continue
			}
			if v, err := tracesample.ParseRandomness(sub[3:]); err == nil {
				st.rv, st.hasRv = v, true
			} else {
				st.rvBad = true
			}
		}
	}
	return st
}

// isSamplingSubKey reports whether an ot sub-key is th or rv (written by appendTo
// itself).
func isSamplingSubKey(sub []byte) bool {
	return len(sub) >= 3 && sub[2] == ':' && (sub[0] == 't' && sub[1] == 'h' || sub[0] == 'r' && sub[1] == 'v')
}

// appendTo appends ts rewritten with st's th and rv to buf: the ot member first (per
// W3C, an updated member moves to the front) with th, rv and the other ot sub-keys as
// they were, then the other members as they were. It returns the appended bytes,
// empty but not nil when nothing is left.
func (st *traceState) appendTo(buf, ts []byte) []byte {
	start := len(buf)
	buf = append(buf, otKey...)
	values := len(buf)
	sep := func() {
		if len(buf) > values {
			buf = append(buf, ';')
		}
	}
	if st.hasTh {
		buf = append(buf, "th:"...)
		buf = tracesample.AppendThreshold(buf, st.th)
	}
	if st.hasRv {
		sep()
		buf = append(buf, "rv:"...)
		buf = tracesample.AppendRandomness(buf, st.rv)
	}
	if st.otStart >= 0 {
		for off := st.otStart; off < st.otEnd; {
			s, e, next := nextSubKey(ts, off, st.otEnd)
			off = next
			if sub := ts[s:e]; len(sub) > 0 && !isSamplingSubKey(sub) {
				sep()
				buf = append(buf, sub...)
			}
		}
	}
	if len(buf) == values {
		buf = buf[:start]
	}
	for off := 0; off < len(ts); {
		s, e, next := nextMember(ts, off)
		off = next
		if m := ts[s:e]; len(m) > 0 && !bytes.HasPrefix(m, otKey) {
			if len(buf) > start {
				buf = append(buf, ',')
			}
			buf = append(buf, m...)
		}
	}
	if len(buf) == start {
		return []byte{}
	}
	return buf[start:]
}
