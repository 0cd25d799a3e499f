package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/otelfleet/otelfleet/pkg/events"
)

var ns = events.Default

// decision reads the stored sampling decision; ok is false when there is none or it
// does not decode.
func (s *stack) decision() (d events.Decision, rev uint64, ok bool) {
	kv, err := s.kv(ns.SamplingBucket())
	if err != nil {
		return d, 0, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	e, err := kv.Get(ctx, "decision")
	if err != nil || json.Unmarshal(e.Value(), &d) != nil {
		return d, 0, false
	}
	return d, e.Revision(), true
}

// leaderDecision waits for a decision computed by a leader after since, with a version
// above minVersion.
func (s *stack) leaderDecision(within time.Duration, since time.Time, minVersion uint64) (events.Decision, error) {
	var d events.Decision
	err := eventually(within, fmt.Sprintf("a leader's decision after %s with a version above %d", since.Format("15:04:05.000"), minVersion), func() bool {
		var ok bool
		d, _, ok = s.decision()
		return ok && d.Leader != "" && d.At.After(since) && d.Version > minVersion
	})
	return d, err
}

// lockKill9: kill -9 of `otelfleet lock` while its command (with a grandchild) runs;
// a second holder then wins. The commands' own timestamps must not overlap.
func lockKill9(s *stack) (string, error) {
	const script = `(i=0; while [ $i -lt 1500 ]; do date +%s%N >> "$0"; sleep 0.02; i=$((i+1)); done) & wait`
	fa, fb := filepath.Join(s.dir, "ticks-a"), filepath.Join(s.dir, "ticks-b")
	bin := filepath.Join(s.bin, "otelfleet")
	a, err := start(s.dir, "lock-a", bin, "--nats", s.url(), "lock", "nightly", "--", "sh", "-c", script, fa)
	if err != nil {
		return "", err
	}
	if err := eventually(10*time.Second, "first holder's command ticks", func() bool { return len(ticks(fa)) >= 3 }); err != nil {
		return "", err
	}
	killed := time.Now()
	a.kill9()
	if _, err := start(s.dir, "lock-b", bin, "--nats", s.url(), "lock", "nightly", "--", "sh", "-c", script, fb); err != nil {
		return "", err
	}
	if err := eventually(15*time.Second, "second holder's command ticks for 0.5 s", func() bool { return len(ticks(fb)) >= 25 }); err != nil {
		return "", err
	}
	ta, tb := ticks(fa), ticks(fb)
	lastA, firstB := ta[len(ta)-1], tb[0]
	overlap := max(0, lastA.Sub(firstB))
	fig := fmt.Sprintf("overlap %v (killed command's last tick %+dms after the kill, next holder's first %+dms)",
		overlap.Round(time.Millisecond), lastA.Sub(killed).Milliseconds(), firstB.Sub(killed).Milliseconds())
	if overlap > 0 {
		return "", errors.New(fig)
	}
	return fig, nil
}

func ticks(file string) []time.Time {
	data, _ := os.ReadFile(file)
	var out []time.Time
	for _, l := range strings.Fields(string(data)) {
		if n, err := strconv.ParseInt(l, 10, 64); err == nil {
			out = append(out, time.Unix(0, n))
		}
	}
	return out
}

// hostileToken: a value with the largest token written straight into
// otlp_sampling/decision must not fence the live leader out; decisions resume and the
// version keeps going up.
func hostileToken(s *stack) (string, error) {
	before, err := s.leaderDecision(20*time.Second, time.Time{}, 0)
	if err != nil {
		return "", err
	}
	kv, err := s.kv(ns.SamplingBucket())
	if err != nil {
		return "", err
	}
	wrote := time.Now()
	if _, err := kv.Put(context.Background(), "decision", []byte(`{"token":18446744073709551615}`)); err != nil {
		return "", err
	}
	after, err := s.leaderDecision(10*time.Second, wrote, before.Version)
	if err != nil {
		return "", fmt.Errorf("decisions did not resume after a hostile token: %w", err)
	}
	return fmt.Sprintf("decisions resumed %.1fs after the hostile token (version %d -> %d, token %d)",
		after.At.Sub(wrote).Seconds(), before.Version, after.Version, after.Token), nil
}

// recreatedLeases: otlp_leases deleted and recreated with the same settings; a leader
// must be elected again and its decisions stored, versions going up.
func recreatedLeases(s *stack) (string, error) {
	if _, err := s.leaderDecision(20*time.Second, time.Time{}, 0); err != nil {
		return "", err
	}
	// Age the bucket (a live system has many revisions) and start a new term, so that the
	// stored decision carries a token well above what a fresh bucket issues.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	leases, err := s.kv(ns.LeasesBucket())
	if err != nil {
		return "", err
	}
	for range 50 {
		if _, err := leases.Put(ctx, "lock.faults-aging", []byte(`{}`)); err != nil {
			return "", err
		}
	}
	_ = leases.Purge(ctx, "lock.faults-aging")
	if err := s.restart(slices.Index(serviceNames, "sampler")); err != nil {
		return "", err
	}
	before, err := s.leaderDecision(20*time.Second, time.Now(), 0)
	if err != nil {
		return "", err
	}
	if before.Token <= 50 {
		return "", fmt.Errorf("the restarted sampler's term has token %d, want one above the 50 aging revisions", before.Token)
	}
	stream := "KV_" + ns.LeasesBucket()
	info, err := s.js.Stream(ctx, stream)
	if err != nil {
		return "", err
	}
	cfg := info.CachedInfo().Config
	if err := s.js.DeleteStream(ctx, stream); err != nil {
		return "", err
	}
	if _, err := s.js.CreateStream(ctx, cfg); err != nil {
		return "", fmt.Errorf("recreate %s: %w", ns.LeasesBucket(), err)
	}
	recreated := time.Now()
	after, err := s.leaderDecision(20*time.Second, recreated, before.Version)
	if err != nil {
		return "", fmt.Errorf("decisions did not resume after %s was recreated: %w", ns.LeasesBucket(), err)
	}
	kv, err := s.kv(ns.LeasesBucket())
	if err != nil {
		return "", err
	}
	if _, err := kv.Get(ctx, "sampler"); err != nil {
		return "", fmt.Errorf("no sampler lease in the recreated bucket: %w", err)
	}
	return fmt.Sprintf("decisions resumed %.1fs after the bucket was recreated (version %d -> %d, token %d -> %d)",
		after.At.Sub(recreated).Seconds(), before.Version, after.Version, before.Token, after.Token), nil
}

// unregisteredFlood: 100,000 load reports from collectors that never registered must
// not move the global rate nor push registered collectors out.
func unregisteredFlood(s *stack) (string, error) {
	const flood = 100_000
	var before events.Decision
	if err := eventually(30*time.Second, "a decision that sees the 6 simulated collectors", func() bool {
		d, _, ok := s.decision()
		before = d
		return ok && d.Inputs.Collectors == 6
	}); err != nil {
		return "", fmt.Errorf("%w (collectors seen %d)", err, before.Inputs.Collectors)
	}
	nc, err := nats.Connect(s.url())
	if err != nil {
		return "", err
	}
	defer nc.Close()
	began := time.Now()
	for i := range flood {
		r := events.LoadReport{V: events.LoadReportVersion, Region: "us-east-1", Collector: "ghost-" + strconv.Itoa(i), At: time.Now(), IntervalMS: 1000, QPS: 1e6, Healthy: true}
		subject, err := ns.LoadSubject(r.Region, r.Collector)
		if err != nil {
			return "", err
		}
		data, err := events.Encode(r)
		if err != nil {
			return "", err
		}
		if err := nc.Publish(subject, data); err != nil {
			return "", err
		}
	}
	if err := nc.Flush(); err != nil {
		return "", err
	}
	sent := time.Since(began)
	// Three decisions after the flood, each must see the registered fleet only.
	last := before
	for range 3 {
		d, err := s.leaderDecision(10*time.Second, last.At, last.Version)
		if err != nil {
			return "", err
		}
		last = d
		if d.Inputs.Collectors != 6 {
			return "", fmt.Errorf("after %d unregistered reports the decision counts %d collectors, want the 6 registered (global rate %.2f -> %.2f)", flood, d.Inputs.Collectors, before.GlobalRate, d.GlobalRate)
		}
		if math.Abs(d.GlobalRate-before.GlobalRate) > 0.25*max(before.GlobalRate, 0.01) {
			return "", fmt.Errorf("global rate moved %.2f -> %.2f after %d unregistered reports", before.GlobalRate, d.GlobalRate, flood)
		}
	}
	return fmt.Sprintf("%d unregistered reports in %.1fs: global rate %.2f -> %.2f, registered collectors kept %d/6",
		flood, sent.Seconds(), before.GlobalRate, last.GlobalRate, last.Inputs.Collectors), nil
}

// hostileConfig: a schema-valid global config with no version, then one with the
// largest version, written straight into otlp_config; then a `config set`. No instance
// may apply a lower version than it had, the huge one must not be applied, and the set
// must store a version above every one stored before.
func hostileConfig(s *stack) (string, error) {
	example, err := filepath.Abs("examples/global-config.yaml")
	if err != nil {
		return "", err
	}
	if _, err := s.cli("config", "set", "-f", example, "--by", "faults"); err != nil {
		return "", err
	}
	applied := map[string]uint64{} // instance -> highest global version seen applied
	seen := map[string]string{}    // instance -> its last report's version, rejections, time
	var problems []string
	noted := map[string]bool{}
	note := func(p string) {
		if !noted[p] {
			noted[p] = true
			problems = append(problems, p)
		}
	}
	changed := 0 // instances whose report changed in the last observe
	observe := func(stage string) error {
		out, err := s.cli("config", "status", "-o", "json")
		if err != nil {
			return err
		}
		var st struct {
			Instances []events.ConfigReport `json:"instances"`
		}
		if err := json.Unmarshal(out, &st); err != nil {
			return fmt.Errorf("config status -o json: %w", err)
		}
		changed = 0
		for _, r := range st.Instances {
			id := r.Service + "/" + r.Instance
			if r.GlobalVersion < applied[id] {
				note(fmt.Sprintf("%s: %s went from v%d to v%d", stage, id, applied[id], r.GlobalVersion))
			}
			if r.GlobalVersion == math.MaxUint64 {
				note(fmt.Sprintf("%s: %s applied version %d", stage, id, r.GlobalVersion))
			}
			applied[id] = max(applied[id], r.GlobalVersion)
			sig := fmt.Sprintf("%d/%d/%v", r.GlobalVersion, r.Rejected, r.AppliedAt)
			if seen[id] != sig {
				changed++
			}
			seen[id] = sig
		}
		return nil
	}
	if err := eventually(15*time.Second, "every service applied the set config", func() bool {
		if observe("after set") != nil {
			return false
		}
		return len(applied) >= 4
	}); err != nil {
		return "", err
	}
	kv, err := s.kv(ns.ConfigBucket())
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := kv.Get(ctx, "global")
	if err != nil {
		return "", err
	}
	var doc map[string]any
	if err := json.Unmarshal(e.Value(), &doc); err != nil {
		return "", fmt.Errorf("stored global config is not a JSON object: %w", err)
	}
	legit := uint64(0)
	if v, ok := doc["version"].(float64); ok {
		legit = uint64(v)
	}
	delete(doc, "version")
	for _, hostile := range []string{"versionless", "huge-version"} {
		data, _ := json.Marshal(doc)
		if hostile == "huge-version" {
			data = []byte(strings.Replace(string(data), "{", `{"version":18446744073709551615,`, 1))
		}
		if _, err := kv.Put(ctx, "global", data); err != nil {
			return "", err
		}
		// Every instance reacts (applies or counts a rejection) within milliseconds; wait up
		// to 5 s for all of them, then judge what they did.
		reacted := 0
		_ = eventually(5*time.Second, "every instance reacted", func() bool {
			if observe("after a "+hostile+" value") != nil {
				return false
			}
			reacted += changed
			return reacted >= len(seen)
		})
	}
	if _, err := s.cli("config", "set", "-f", example, "--by", "faults"); err != nil {
		problems = append(problems, "config set after the hostile values: "+err.Error())
	}
	hist, err := kv.History(ctx, "global")
	if err != nil {
		return "", err
	}
	var versions []string
	var newest uint64
	for _, h := range hist {
		var v struct {
			Version uint64 `json:"version"`
		}
		_ = json.Unmarshal(h.Value(), &v)
		versions = append(versions, strconv.FormatUint(v.Version, 10))
		newest = v.Version
	}
	if newest <= legit || newest == math.MaxUint64 {
		problems = append(problems, fmt.Sprintf("the set after the hostile values stored version %d (v%d was in force before)", newest, legit))
	}
	if err := eventually(10*time.Second, "every service on the newest version", func() bool {
		if observe("after the last set") != nil {
			return false
		}
		for _, v := range applied {
			if v != newest {
				return false
			}
		}
		return true
	}); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		more := ""
		if len(problems) > 3 {
			problems, more = problems[:3], fmt.Sprintf(" and %d more", len(problems)-3)
		}
		return "", fmt.Errorf("versions not monotonic: %s%s (stored: %s)", strings.Join(problems, "; "), more, strings.Join(versions, " "))
	}
	return fmt.Sprintf("versions monotonic: stored %s, every instance on v%d", strings.Join(versions, " "), newest), nil
}

// natsKill9: kill -9 of nats-server under the simulated fleet, restarted on the same
// port and store: every service ready again and decisions resume.
func natsKill9(s *stack) (string, error) {
	before, err := s.leaderDecision(20*time.Second, time.Time{}, 0)
	if err != nil {
		return "", err
	}
	s.nats.kill9()
	killed := time.Now()
	if err := s.startNATS(); err != nil {
		return "", err
	}
	restarted := time.Since(killed)
	took, err := s.ready(30 * time.Second)
	if err != nil {
		return "", err
	}
	after, err := s.leaderDecision(20*time.Second, killed, before.Version)
	if err != nil {
		return "", fmt.Errorf("no decision after the NATS restart: %w", err)
	}
	return fmt.Sprintf("every service ready %.1fs after the restart (NATS back in %.1fs), decisions resumed %.1fs after the kill (version %d -> %d)",
		took.Seconds(), restarted.Seconds(), after.At.Sub(killed).Seconds(), before.Version, after.Version), nil
}
