package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/loadreport"
)

const eventsUsage = `events [SUBJECT] [-o text|json] [-n COUNT]

Tails event subjects as they are published, one line per message: time, subject, type
(ce-type without io.otelfleet.) and a compact summary of the JSON payload. SUBJECT
defaults to <root>.events.> (lifecycle events); <root>.load.> shows load reports and
any NATS subject or wildcard works. -o json prints one JSON object per message
(subject, CloudEvents attributes and the payload as sent). Runs until Ctrl-C (exit 0)
or until COUNT messages were shown.`

// maxSummary bounds a text summary's length.
const maxSummary = 240

func runEvents(ctx context.Context, env *cliEnv, args []string) error {
	fs, _ := env.flags("events", eventsUsage)
	out := outputFlag(fs, "text", "json")
	count := fs.Int("n", 0, "exit after this many messages (0: run until Ctrl-C)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usageError("events: at most one SUBJECT, got %d", len(pos))
	}
	if *count < 0 {
		return usageError("-n %d: must not be negative", *count)
	}
	ns, err := env.namespace()
	if err != nil {
		return err
	}
	subject := ns.EventSubjects()
	if len(pos) == 1 {
		subject = pos[0]
	}
	nc, err := env.dial()
	if err != nil {
		return err
	}
	defer nc.Close()
	ch := make(chan *nats.Msg, 4096)
	sub, err := nc.ChanSubscribe(subject, ch)
	if err != nil {
		if errors.Is(err, nats.ErrBadSubject) {
			return usageError("events: %q is not a valid NATS subject", subject)
		}
		return fmt.Errorf("subscribe to %s: %w", subject, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.FlushTimeout(env.timeout); err != nil {
		return fmt.Errorf("subscribe to %s at %s: %w", subject, env.nats.URL, err)
	}
	fmt.Fprintf(env.stderr, "otelfleet events: listening on %s at %s (Ctrl-C to stop)\n", subject, nc.ConnectedUrlRedacted())
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	shown := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-closed:
			return &exitError{code: exitUnreachable, err: fmt.Errorf("connection to %s closed", env.nats.URL)}
		case msg := <-ch:
			var err error
			if *out == "json" {
				err = writeEventJSON(env.stdout, msg, time.Now())
			} else {
				_, err = io.WriteString(env.stdout, eventLine(msg, time.Now())+"\n")
			}
			if err != nil {
				return err
			}
			shown++
			if *count > 0 && shown >= *count {
				return nil
			}
		}
	}
}

// eventTime is the message's ce-time, or received when it has none.
func eventTime(msg *nats.Msg, received time.Time) time.Time {
	if t, err := time.Parse(time.RFC3339Nano, msg.Header.Get(events.HeaderTime)); err == nil {
		return t
	}
	return received
}

// shortType is ce-type without the io.otelfleet. prefix, or "-".
func shortType(msg *nats.Msg) string {
	t := msg.Header.Get(events.HeaderType)
	if t == "" {
		return "-"
	}
	return strings.TrimPrefix(t, events.TypePrefix)
}

// eventLine is the one-line, human-readable form of msg.
func eventLine(msg *nats.Msg, received time.Time) string {
	return fmt.Sprintf("%s  %s  %s  %s", eventTime(msg, received).Local().Format("15:04:05.000"), msg.Subject, shortType(msg), summarize(msg))
}

// summarize describes the payload: load reports by their figures, other JSON by its
// top-level fields.
func summarize(msg *nats.Msg) string {
	if isLoadReport(msg) {
		r, err := loadreport.Decode(msg)
		if err != nil {
			return "INVALID " + err.Error()
		}
		return loadSummary(r)
	}
	return jsonSummary(msg.Data)
}

func isLoadReport(msg *nats.Msg) bool {
	if t := msg.Header.Get(events.HeaderType); t != "" {
		return strings.HasPrefix(t, events.TypePrefix+events.LoadReport{}.Kind()+".")
	}
	_, _, _, err := loadreport.ParseSubject(msg.Subject)
	return err == nil
}

// loadSummary is a load report in one line.
func loadSummary(r events.LoadReport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "qps=%s", num(r.QPS))
	if r.Capacity > 0 {
		fmt.Fprintf(&b, " cap=%s util=%.0f%%", num(r.Capacity), 100*r.QPS/r.Capacity)
	}
	fmt.Fprintf(&b, " queue=%d lat=%sms err=%.2f%% cpu=%.0f%% mem=%s", r.QueueDepth, num(r.AvgLatencyMS), 100*r.ErrorRate, 100*r.CPU, bytesIEC(r.Memory))
	if r.Healthy {
		b.WriteString(" healthy")
	} else {
		b.WriteString(" UNHEALTHY")
	}
	if len(r.Services) > 0 {
		b.WriteString(" top=")
		for i, s := range r.Services[:min(len(r.Services), 3)] {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%s:%s", s.Name, num(s.SpansPerSec))
		}
	}
	return b.String()
}

// num formats a figure compactly: whole numbers from 1000 up (12345.67 → 12346), one
// decimal from 1 up (99.6), two significant decimals below 1 (0.25).
func num(v float64) string {
	switch {
	case v >= 1000:
		return strconv.FormatFloat(math.Round(v), 'f', -1, 64)
	case v >= 1:
		return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64)
	default:
		return strconv.FormatFloat(v, 'g', 2, 64)
	}
}

func bytesIEC(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + "B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.0f%ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// jsonSummary lists a JSON object's top-level fields as key=value, in payload order,
// skipping "v": scalars as they are, arrays of scalars joined, other arrays and objects
// by size; a registration's health status is lifted out. Other JSON values are shown as
// they are; a payload that is not valid JSON as a whole (even one that starts like an
// object) is shown raw, marked "not JSON", never as fields.
func jsonSummary(data []byte) string {
	if len(data) == 0 {
		return "(empty)"
	}
	if !json.Valid(data) {
		return fmt.Sprintf("(%d bytes, not JSON) %s", len(data), truncate(strconv.Quote(string(data[:min(len(data), 60)]))))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		var buf bytes.Buffer
		_ = json.Compact(&buf, data) // valid, so it compacts: one line
		return truncate(buf.String())
	}
	var parts []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			break
		}
		if key == "v" {
			continue
		}
		parts = append(parts, key+"="+valueSummary(key, raw))
	}
	return truncate(strings.Join(parts, " "))
}

func valueSummary(key string, raw json.RawMessage) string {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return "?"
	}
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		if x == "" || strings.ContainsAny(x, " \t\n\"=") {
			return strconv.Quote(x)
		}
		return x
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	case []any:
		var items []string
		for _, it := range x {
			switch s := it.(type) {
			case string:
				items = append(items, s)
			case json.Number:
				items = append(items, s.String())
			default:
				return fmt.Sprintf("[%d items]", len(x))
			}
		}
		return "[" + strings.Join(items, ",") + "]"
	case map[string]any:
		if key == "registration" || key == "health" {
			if h, ok := x["health"].(map[string]any); ok {
				x = h
			}
			if st, ok := x["status"].(string); ok {
				return "{health:" + st + "}"
			}
		}
		return fmt.Sprintf("{%d fields}", len(x))
	}
	return "?"
}

func truncate(s string) string {
	if len(s) <= maxSummary {
		return s
	}
	return s[:maxSummary-3] + "..."
}

// eventJSON is one message in -o json.
type eventJSON struct {
	Subject string          `json:"subject"`
	Type    string          `json:"type,omitempty"`
	Source  string          `json:"source,omitempty"`
	ID      string          `json:"id,omitempty"`
	Time    string          `json:"time"`
	Data    json.RawMessage `json:"data,omitempty"`
	// Text carries a payload that is not JSON.
	Text string `json:"text,omitempty"`
}

func writeEventJSON(w io.Writer, msg *nats.Msg, received time.Time) error {
	e := eventJSON{
		Subject: msg.Subject,
		Type:    msg.Header.Get(events.HeaderType),
		Source:  msg.Header.Get(events.HeaderSource),
		ID:      msg.Header.Get(events.HeaderID),
		Time:    eventTime(msg, received).UTC().Format(time.RFC3339Nano),
	}
	if json.Valid(msg.Data) {
		var buf bytes.Buffer
		if err := json.Compact(&buf, msg.Data); err == nil {
			e.Data = buf.Bytes()
		}
	} else if len(msg.Data) > 0 {
		e.Text = string(msg.Data)
	}
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = w.Write(append(data, '\n'))
	return err
}
