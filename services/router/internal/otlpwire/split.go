package otlpwire

import (
	"bytes"
	"fmt"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of the OTLP protobuf messages Split reads (opentelemetry-proto).
const (
	fieldRequestResources = 1 // Export*ServiceRequest.resource_{spans,logs,metrics}
	fieldResource         = 1 // Resource{Spans,Logs,Metrics}.resource
	fieldScopes           = 2 // Resource*.scope_{spans,logs,metrics}
	fieldItems            = 2 // Scope*.{spans,log_records,metrics}
	fieldResourceAttrs    = 1 // Resource.attributes
	fieldKVKey            = 1 // KeyValue.key
	fieldKVValue          = 2 // KeyValue.value
	fieldAnyString        = 1 // AnyValue.string_value
	fieldSpanTraceID      = 1 // Span.trace_id
	fieldSpanTraceState   = 3 // Span.trace_state
	fieldLogTraceID       = 9 // LogRecord.trace_id
	fieldDataPoints       = 1 // {Gauge,Sum,Histogram,ExponentialHistogram,Summary}.data_points
)

// Metric.data oneof members, each a message with data_points = 1.
var metricDataFields = [...]protowire.Number{5, 7, 9, 10, 11}

var serviceNameKey = []byte("service.name")

// layout describes where a signal keeps its items.
type layout struct {
	resources, scopes, items string // field names for error paths
	traceIDField             protowire.Number
	traceStateField          protowire.Number // 0: the items have none
}

var (
	traceLayout = layout{"resource_spans", "scope_spans", "spans", fieldSpanTraceID, fieldSpanTraceState}
	logLayout   = layout{"resource_logs", "scope_logs", "log_records", fieldLogTraceID, 0}
)

// itemRec is what the first pass remembers of one item.
type itemRec struct {
	start, end     int // the item's message content in the request
	tsStart, tsEnd int // its (last) trace_state field, tag included; equal when absent
	res, scope     int
	dest           int
	next           int // next item of the same destination, -1 at the end
	newTS, newLen  int // replacement trace_state in the arena; newTS < 0 keeps it
	count          int
	size           int // encoded size of the item's message content as written
}

// containerRec is a resource or a scope: its message content, and the encoded size of
// its fields other than the repeated child (copied as they are).
type containerRec struct {
	start, end int
	other      int
}

// Splitter splits requests; it keeps scratch buffers between calls, so that a split
// in steady state allocates nothing per item. A Splitter is not safe for concurrent
// use: use one per goroutine (or a sync.Pool). The zero value is ready to use.
type Splitter struct {
	items      []itemRec
	scopes     []containerRec
	resources  []containerRec
	arena      []byte // replacement trace states
	head, tail []int  // per destination
	counts     []int  // items per destination
	parts      []Part
	item       Item
}

// Split walks req, an encoded Export*ServiceRequest of signal sig, calls route for every
// item (in order; the same trace ID may appear many times), and returns one request per
// destination. n is the number of destinations route may return. A malformed request
// returns an error wrapping ErrMalformed and no parts; route may have been called for
// items before the malformed one.
//
// Every part keeps, for each of its items, the item's resource and scope exactly as they
// were encoded (unknown fields included) and the items in their original order;
// resources and scopes left with no item are left out. Verdict.TraceState is copied
// before route is called again, so route may reuse one buffer for it. Fields of the
// request other than its resources are not carried over.
func (s *Splitter) Split(sig Signal, req []byte, n int, route func(*Item) Verdict) (Result, error) {
	if n < 0 {
		n = 0
	}
	s.reset(n)
	var res Result
	var err error
	switch sig {
	case Traces:
		err = s.walkNested(req, &traceLayout, n, route, &res)
	case Logs:
		err = s.walkNested(req, &logLayout, n, route, &res)
	case Metrics:
		err = s.walkMetrics(req, n, route, &res)
	default:
		return Result{}, fmt.Errorf("otlpwire: unknown signal %d", sig)
	}
	if err != nil {
		return Result{}, err
	}
	for d := 0; d < n; d++ {
		if s.head[d] < 0 {
			continue
		}
		var p Part
		if sig == Metrics {
			p = s.writeFlat(req, d)
		} else {
			p = s.writeNested(req, d)
		}
		s.parts = append(s.parts, p)
	}
	res.Parts = s.parts
	return res, nil
}

func (s *Splitter) reset(n int) {
	s.items = s.items[:0]
	s.scopes = s.scopes[:0]
	s.resources = s.resources[:0]
	s.arena = s.arena[:0]
	s.parts = s.parts[:0]
	s.head = grow(s.head, n)
	s.tail = grow(s.tail, n)
	s.counts = grow(s.counts, n)
	for d := 0; d < n; d++ {
		s.head[d], s.tail[d], s.counts[d] = -1, -1, 0
	}
	s.item = Item{}
}

func grow(b []int, n int) []int {
	if cap(b) < n {
		return make([]int, n)
	}
	return b[:n]
}

// field is one protobuf field at the wire level.
type field struct {
	num protowire.Number
	typ protowire.Type
	// start is where the tag begins, vstart where the value begins (for a length-
	// delimited field, its content), end where the field ends.
	start, vstart, end int
}

// nextField reads the field at b[off:limit]. msg names the message for errors.
func nextField(b []byte, off, limit int) (field, error) {
	// Fast paths for a one-byte tag: short length-delimited, fixed64 and fixed32 fields
	// (most of a span's fields).
	if off+1 < limit && b[off] < 0x80 && b[off] >= 8 {
		num, vs := protowire.Number(b[off]>>3), off+1
		switch protowire.Type(b[off] & 7) {
		case protowire.BytesType:
			if l := int(b[vs]); l < 0x80 && vs+1+l <= limit {
				return field{num: num, typ: protowire.BytesType, start: off, vstart: vs + 1, end: vs + 1 + l}, nil
			}
		case protowire.Fixed64Type:
			if vs+8 <= limit {
				return field{num: num, typ: protowire.Fixed64Type, start: off, vstart: vs, end: vs + 8}, nil
			}
		case protowire.Fixed32Type:
			if vs+4 <= limit {
				return field{num: num, typ: protowire.Fixed32Type, start: off, vstart: vs, end: vs + 4}, nil
			}
		}
	}
	num, typ, n := protowire.ConsumeTag(b[off:limit])
	if n < 0 {
		return field{}, fmt.Errorf("offset %d: bad field tag: %w", off, protowire.ParseError(n))
	}
	f := field{num: num, typ: typ, start: off, vstart: off + n}
	if typ == protowire.BytesType {
		l, m := protowire.ConsumeVarint(b[f.vstart:limit])
		if m < 0 {
			return field{}, fmt.Errorf("offset %d: field %d: bad length: %w", off, num, protowire.ParseError(m))
		}
		f.vstart += m
		if left := limit - f.vstart; l > uint64(left) {
			return field{}, fmt.Errorf("offset %d: field %d is %d bytes, only %d left", off, num, l, left)
		}
		f.end = f.vstart + int(l)
		return f, nil
	}
	m := protowire.ConsumeFieldValue(num, typ, b[f.vstart:limit])
	if m < 0 {
		return field{}, fmt.Errorf("offset %d: field %d: %w", off, num, protowire.ParseError(m))
	}
	f.end = f.vstart + m
	return f, nil
}

// wantBytes checks that a known field is length-delimited.
func wantBytes(f field, name string) error {
	if f.typ != protowire.BytesType {
		return fmt.Errorf("%s has wire type %d, want length-delimited", name, f.typ)
	}
	return nil
}

func malformed(path string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrMalformed, path, err)
}

// walkResources calls each for every resource (field 1) of the request.
func walkResources(req []byte, name string, each func(i, start, end int) error) error {
	i := 0
	for off := 0; off < len(req); {
		f, err := nextField(req, off, len(req))
		if err != nil {
			if i == 0 {
				return malformed(fmt.Sprintf("request (before %s[0])", name), err)
			}
			return malformed(fmt.Sprintf("request (after %s[%d])", name, i-1), err)
		}
		off = f.end
		if f.num != fieldRequestResources {
			continue
		}
		if err := wantBytes(f, name); err != nil {
			return malformed(fmt.Sprintf("request: %s[%d]", name, i), err)
		}
		if err := each(i, f.vstart, f.end); err != nil {
			return err
		}
		i++
	}
	return nil
}

// walkNested is the first pass for traces and logs.
func (s *Splitter) walkNested(req []byte, lay *layout, n int, route func(*Item) Verdict, res *Result) error {
	return walkResources(req, lay.resources, func(ri, start, end int) error {
		svc, other, err := resourceHeader(req, start, end, fieldScopes, lay.scopes)
		if err != nil {
			return malformed(fmt.Sprintf("%s[%d]", lay.resources, ri), err)
		}
		s.resources = append(s.resources, containerRec{start: start, end: end, other: other})
		si := 0
		for off := start; off < end; {
			f, _ := nextField(req, off, end) // checked by resourceHeader
			off = f.end
			if f.num != fieldScopes {
				continue
			}
			if err := s.walkScope(req, lay, ri, si, svc, f.vstart, f.end, n, route, res); err != nil {
				return err
			}
			si++
		}
		return nil
	})
}

// resourceHeader checks the fields of a Resource{Spans,Logs,Metrics} at b[start:end],
// finds the service name, and sums the encoded size of the fields other than child.
func resourceHeader(b []byte, start, end int, child protowire.Number, childName string) (svc []byte, other int, err error) {
	for off := start; off < end; {
		f, err := nextField(b, off, end)
		if err != nil {
			return nil, 0, err
		}
		off = f.end
		switch f.num {
		case child:
			if err := wantBytes(f, childName); err != nil {
				return nil, 0, err
			}
			continue
		case fieldResource:
			if err := wantBytes(f, "resource"); err != nil {
				return nil, 0, err
			}
			if svc, err = serviceName(b[f.vstart:f.end]); err != nil {
				return nil, 0, fmt.Errorf("resource: %w", err)
			}
		}
		other += f.end - f.start
	}
	return svc, other, nil
}

// serviceName returns the string value of the service.name attribute of an encoded
// Resource (nil when absent or not a string).
func serviceName(r []byte) ([]byte, error) { return stringAttr(r, serviceNameKey) }

// stringAttr returns the string value of attribute want of an encoded Resource (nil
// when absent or not a string).
func stringAttr(r, want []byte) ([]byte, error) {
	for off := 0; off < len(r); {
		f, err := nextField(r, off, len(r))
		if err != nil {
			return nil, err
		}
		off = f.end
		if f.num != fieldResourceAttrs || f.typ != protowire.BytesType {
			continue
		}
		kv := r[f.vstart:f.end]
		var key, val []byte
		var isKey, isVal bool
		for o := 0; o < len(kv); {
			g, err := nextField(kv, o, len(kv))
			if err != nil {
				return nil, fmt.Errorf("attributes: %w", err)
			}
			o = g.end
			if g.typ != protowire.BytesType {
				continue
			}
			switch g.num {
			case fieldKVKey:
				key, isKey = kv[g.vstart:g.end], true
			case fieldKVValue:
				val, isVal = kv[g.vstart:g.end], true
			}
		}
		if !isKey || !isVal || !bytes.Equal(key, want) {
			continue
		}
		var str []byte
		for o := 0; o < len(val); {
			g, err := nextField(val, o, len(val))
			if err != nil {
				return nil, fmt.Errorf("attributes[%s]: %w", want, err)
			}
			o = g.end
			if g.num == fieldAnyString && g.typ == protowire.BytesType {
				str = val[g.vstart:g.end]
			} else {
				str = nil // another oneof member set last wins
			}
		}
		if str != nil {
			return str, nil
		}
	}
	return nil, nil
}

func (s *Splitter) walkScope(req []byte, lay *layout, ri, si int, svc []byte, start, end, n int, route func(*Item) Verdict, res *Result) error {
	sc := len(s.scopes)
	s.scopes = append(s.scopes, containerRec{start: start, end: end})
	other := 0
	ii := 0
	for off := start; off < end; {
		f, err := nextField(req, off, end)
		if err != nil {
			return malformed(fmt.Sprintf("%s[%d].%s[%d]", lay.resources, ri, lay.scopes, si), err)
		}
		off = f.end
		if f.num != fieldItems {
			other += f.end - f.start
			continue
		}
		if err := wantBytes(f, lay.items); err != nil {
			return malformed(fmt.Sprintf("%s[%d].%s[%d]", lay.resources, ri, lay.scopes, si), err)
		}
		rec := itemRec{start: f.vstart, end: f.end, res: ri, scope: sc, newTS: -1, count: 1}
		it := &s.item
		*it = Item{Resource: ri, Service: svc, Count: 1}
		if err := readItem(req, lay, &rec, it); err != nil {
			return malformed(fmt.Sprintf("%s[%d].%s[%d].%s[%d]", lay.resources, ri, lay.scopes, si, lay.items, ii), err)
		}
		if err := s.place(route(it), lay.traceStateField != 0, &rec, n, res); err != nil {
			return err
		}
		ii++
	}
	s.scopes[sc].other = other
	return nil
}

// readItem finds the trace ID and trace state of a span or log record.
func readItem(b []byte, lay *layout, rec *itemRec, it *Item) error {
	for off := rec.start; off < rec.end; {
		f, err := nextField(b, off, rec.end)
		if err != nil {
			return err
		}
		off = f.end
		switch f.num {
		case lay.traceIDField:
			if err := wantBytes(f, "trace_id"); err != nil {
				return err
			}
			id := b[f.vstart:f.end]
			switch len(id) {
			case 0:
				it.TraceID, it.HasTraceID = [16]byte{}, false
			case 16:
				it.TraceID = [16]byte(id)
				it.HasTraceID = it.TraceID != [16]byte{}
			default:
				return fmt.Errorf("trace_id is %d bytes, want 16", len(id))
			}
		case lay.traceStateField:
			if lay.traceStateField == 0 {
				continue
			}
			if err := wantBytes(f, "trace_state"); err != nil {
				return err
			}
			rec.tsStart, rec.tsEnd = f.start, f.end
			it.TraceState = b[f.vstart:f.end]
			if len(it.TraceState) == 0 {
				it.TraceState = nil
			}
		}
	}
	return nil
}

// place records an item's verdict.
func (s *Splitter) place(v Verdict, hasTS bool, rec *itemRec, n int, res *Result) error {
	res.Total += rec.count
	switch {
	case v.Dest == DestSampled:
		res.Sampled += rec.count
		return nil
	case v.Dest == DestRejected:
		res.Rejected += rec.count
		return nil
	case v.Dest < 0 || v.Dest >= n:
		return fmt.Errorf("otlpwire: route returned destination %d, want [0, %d) or DestSampled/DestRejected", v.Dest, n)
	}
	rec.dest = v.Dest
	rec.next = -1
	rec.size = rec.end - rec.start
	if hasTS && v.TraceState != nil {
		rec.newTS, rec.newLen = len(s.arena), len(v.TraceState)
		s.arena = append(s.arena, v.TraceState...)
		rec.size -= rec.tsEnd - rec.tsStart
		if rec.newLen > 0 {
			rec.size += 1 + protowire.SizeVarint(uint64(rec.newLen)) + rec.newLen
		}
	}
	i := len(s.items)
	s.items = append(s.items, *rec)
	if t := s.tail[v.Dest]; t >= 0 {
		s.items[t].next = i
	} else {
		s.head[v.Dest] = i
	}
	s.tail[v.Dest] = i
	s.counts[v.Dest] += rec.count
	return nil
}

// fieldSize is the encoded size of a length-delimited field with a 1-byte tag.
func fieldSize(n int) int { return 1 + protowire.SizeVarint(uint64(n)) + n }

// scopeRun sums the content size of the scope of item i for its destination and
// returns the first item after the scope's run.
func (s *Splitter) scopeRun(i int) (size, next int) {
	sc := s.items[i].scope
	size = s.scopes[sc].other
	for ; i >= 0 && s.items[i].scope == sc; i = s.items[i].next {
		size += fieldSize(s.items[i].size)
	}
	return size, i
}

// resourceRun is scopeRun for the resource of item i.
func (s *Splitter) resourceRun(i int) (size, next int) {
	r := s.items[i].res
	size = s.resources[r].other
	for i >= 0 && s.items[i].res == r {
		var sz int
		sz, i = s.scopeRun(i)
		size += fieldSize(sz)
	}
	return size, i
}

// writeNested is the second pass for traces and logs: destination d's request.
func (s *Splitter) writeNested(req []byte, d int) Part {
	total := 0
	for i := s.head[d]; i >= 0; {
		var sz int
		sz, i = s.resourceRun(i)
		total += fieldSize(sz)
	}
	pb := getPayload(total)
	b := pb.b
	for i := s.head[d]; i >= 0; {
		r := s.items[i].res
		rsz, rnext := s.resourceRun(i)
		b = protowire.AppendTag(b, fieldRequestResources, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(rsz))
		b = appendOther(b, req, s.resources[r].start, s.resources[r].end, fieldScopes)
		for i != rnext {
			sc := s.items[i].scope
			ssz, snext := s.scopeRun(i)
			b = protowire.AppendTag(b, fieldScopes, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(ssz))
			b = appendOther(b, req, s.scopes[sc].start, s.scopes[sc].end, fieldItems)
			for ; i != snext; i = s.items[i].next {
				b = s.appendItem(b, req, &s.items[i])
			}
		}
	}
	pb.b = b
	return Part{Dest: d, Payload: b, Items: s.counts[d], pooled: pb}
}

// appendOther appends the fields of the message b[start:end] other than skip, as they
// are (the message was checked by the first pass).
func appendOther(dst, b []byte, start, end int, skip protowire.Number) []byte {
	for off := start; off < end; {
		f, _ := nextField(b, off, end)
		off = f.end
		if f.num != skip {
			dst = append(dst, b[f.start:f.end]...)
		}
	}
	return dst
}

func (s *Splitter) appendItem(b, req []byte, it *itemRec) []byte {
	b = protowire.AppendTag(b, fieldItems, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(it.size))
	if it.newTS < 0 {
		return append(b, req[it.start:it.end]...)
	}
	if it.tsStart == it.tsEnd { // no trace_state before
		b = append(b, req[it.start:it.end]...)
	} else {
		b = append(b, req[it.start:it.tsStart]...)
		b = append(b, req[it.tsEnd:it.end]...)
	}
	if it.newLen > 0 {
		b = protowire.AppendTag(b, fieldSpanTraceState, protowire.BytesType)
		b = protowire.AppendBytes(b, s.arena[it.newTS:it.newTS+it.newLen])
	}
	return b
}

// walkMetrics is the first pass for metrics: an item is one whole ResourceMetrics.
func (s *Splitter) walkMetrics(req []byte, n int, route func(*Item) Verdict, res *Result) error {
	return walkResources(req, "resource_metrics", func(ri, start, end int) error {
		path := func() string { return fmt.Sprintf("resource_metrics[%d]", ri) }
		svc, _, err := resourceHeader(req, start, end, fieldScopes, "scope_metrics")
		if err != nil {
			return malformed(path(), err)
		}
		count, err := countDataPoints(req, start, end)
		if err != nil {
			return malformed(path(), err)
		}
		rec := itemRec{start: start, end: end, res: ri, scope: -1, newTS: -1, count: count}
		it := &s.item
		*it = Item{Resource: ri, Service: svc, Count: count}
		return s.place(route(it), false, &rec, n, res)
	})
}

// countDataPoints counts the data points of the ResourceMetrics at b[start:end].
func countDataPoints(b []byte, start, end int) (int, error) {
	count := 0
	si := 0
	for off := start; off < end; {
		f, _ := nextField(b, off, end) // checked by resourceHeader
		off = f.end
		if f.num != fieldScopes {
			continue
		}
		mi := 0
		for o := f.vstart; o < f.end; {
			g, err := nextField(b, o, f.end)
			if err != nil {
				return 0, fmt.Errorf("scope_metrics[%d]: %w", si, err)
			}
			o = g.end
			if g.num != fieldItems {
				continue
			}
			if err := wantBytes(g, "metrics"); err != nil {
				return 0, fmt.Errorf("scope_metrics[%d]: %w", si, err)
			}
			c, err := metricDataPoints(b, g.vstart, g.end)
			if err != nil {
				return 0, fmt.Errorf("scope_metrics[%d].metrics[%d]: %w", si, mi, err)
			}
			count += c
			mi++
		}
		si++
	}
	return count, nil
}

// metricDataPoints counts the data points of the Metric at b[start:end].
func metricDataPoints(b []byte, start, end int) (int, error) {
	count := 0
	for off := start; off < end; {
		f, err := nextField(b, off, end)
		if err != nil {
			return 0, err
		}
		off = f.end
		if !isMetricData(f.num) {
			continue
		}
		if err := wantBytes(f, "data"); err != nil {
			return 0, err
		}
		count = 0 // oneof: the last member set wins
		for o := f.vstart; o < f.end; {
			g, err := nextField(b, o, f.end)
			if err != nil {
				return 0, fmt.Errorf("data: %w", err)
			}
			o = g.end
			if g.num == fieldDataPoints {
				count++
			}
		}
	}
	return count, nil
}

func isMetricData(n protowire.Number) bool {
	for _, m := range metricDataFields {
		if n == m {
			return true
		}
	}
	return false
}

// writeFlat is the second pass for metrics: destination d's request.
func (s *Splitter) writeFlat(req []byte, d int) Part {
	total := 0
	for i := s.head[d]; i >= 0; i = s.items[i].next {
		total += fieldSize(s.items[i].size)
	}
	pb := getPayload(total)
	b := pb.b
	for i := s.head[d]; i >= 0; i = s.items[i].next {
		it := &s.items[i]
		b = protowire.AppendTag(b, fieldRequestResources, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(it.size))
		b = append(b, req[it.start:it.end]...)
	}
	pb.b = b
	return Part{Dest: d, Payload: b, Items: s.counts[d], pooled: pb}
}

// payloadBuf is a pooled output buffer.
type payloadBuf struct{ b []byte }

var payloadPool sync.Pool

// minPayload is the smallest buffer the pool hands out; sizes are rounded up to powers
// of two so buffers of a pool fit most requests.
const minPayload = 1 << 10

func getPayload(n int) *payloadBuf {
	pb, _ := payloadPool.Get().(*payloadBuf)
	if pb == nil {
		pb = &payloadBuf{}
	}
	if cap(pb.b) < n {
		c := minPayload
		for c < n {
			c <<= 1
		}
		pb.b = make([]byte, 0, c)
	}
	pb.b = pb.b[:0]
	return pb
}

// Release hands p's Payload back to the buffer pool; p.Payload must not be used
// afterwards, by anyone holding it. Calling Release on a Part (or a copy of it) more
// than once is a bug; Release on a Part without a pooled Payload does nothing.
func (p *Part) Release() {
	if p.pooled == nil {
		return
	}
	payloadPool.Put(p.pooled)
	p.pooled = nil
	p.Payload = nil
}
