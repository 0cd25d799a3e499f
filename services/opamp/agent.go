package opampsvc

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/open-telemetry/opamp-go/protobufs"
	"go.yaml.in/yaml/v3"

	"github.com/otelfleet/otelfleet/pkg/events"
)

// ErrRefused is wrapped by every error about an agent's message: the agent gets an
// error response and nothing it sent is stored.
var ErrRefused = errors.New("agent message refused")

// Bounds on what an agent may store.
const (
	maxAttrs       = 128
	maxAttrKey     = 256
	maxAttrValue   = 1024
	maxComponents  = 2048
	maxHealthNodes = 4096
	maxHealthDepth = 16
	maxText        = 1024
	maxChecks      = 16
)

// AddressAttribute is the agent description attribute that gives a collector's OTLP
// endpoint (host:port) for its registration's address; without it the address comes from
// the effective config's otlp receiver.
const AddressAttribute = "otelfleet.otlp.endpoint"

// Attribute names read from the agent description.
const (
	attrServiceVersion    = "service.version"
	attrServiceInstanceID = "service.instance.id"
	attrServiceName       = "service.name"
)

// agentView is what the replica derives from an agent's messages: the accumulated
// protocol state (agents send only what changed) turned into events.AgentState.
type agentView struct {
	state      events.AgentState
	caps       uint64
	address    string
	components int
	health     events.Health
	described  bool
	remoteHash []byte
	// componentsHash is the hash of the components stored; wantComponents is set when
	// the agent announced another hash without the list (agents send the list only when
	// asked).
	componentsHash []byte
	wantComponents bool
}

// uidString checks an instance UID (16 bytes) and returns it as 32 hex digits.
func uidString(b []byte) (string, error) {
	if len(b) != 16 {
		return "", fmt.Errorf("%w: instance_uid: %d bytes, want 16", ErrRefused, len(b))
	}
	return hex.EncodeToString(b), nil
}

// capabilityNames lists the AgentCapabilities set in caps, without the prefix, in bit
// order.
func capabilityNames(caps uint64) []string {
	var out []string
	for bit := uint64(1); bit != 0 && bit <= caps; bit <<= 1 {
		if caps&bit == 0 {
			continue
		}
		name, ok := protobufs.AgentCapabilities_name[int32(bit)]
		if !ok {
			name = "bit" + strconv.FormatUint(bit, 10)
		}
		out = append(out, strings.TrimPrefix(name, "AgentCapabilities_"))
	}
	return out
}

// attributes bounds and flattens an attribute list.
func attributes(where string, kvs []*protobufs.KeyValue) (map[string]string, error) {
	if len(kvs) > maxAttrs {
		return nil, fmt.Errorf("%w: %s: %d attributes, at most %d", ErrRefused, where, len(kvs), maxAttrs)
	}
	if len(kvs) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(kvs))
	for i, kv := range kvs {
		k := kv.GetKey()
		if k == "" || len(k) > maxAttrKey {
			return nil, fmt.Errorf("%w: %s[%d]: key of %d bytes, want 1..%d", ErrRefused, where, i, len(k), maxAttrKey)
		}
		v := anyString(kv.GetValue())
		if len(v) > maxAttrValue {
			return nil, fmt.Errorf("%w: %s[%q]: value of %d bytes, at most %d", ErrRefused, where, k, len(v), maxAttrValue)
		}
		out[k] = v
	}
	return out, nil
}

// anyString renders a scalar AnyValue; arrays, maps and bytes become a short marker.
func anyString(v *protobufs.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *protobufs.AnyValue_StringValue:
		return x.StringValue
	case *protobufs.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *protobufs.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *protobufs.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case *protobufs.AnyValue_BytesValue:
		return fmt.Sprintf("<%d bytes>", len(x.BytesValue))
	case *protobufs.AnyValue_ArrayValue:
		return fmt.Sprintf("<array of %d>", len(x.ArrayValue.GetValues()))
	case *protobufs.AnyValue_KvlistValue:
		return fmt.Sprintf("<map of %d>", len(x.KvlistValue.GetValues()))
	default:
		return ""
	}
}

// attr looks name up in the identifying attributes, then the non-identifying ones.
func (v *agentView) attr(name string) (string, bool) { return attrOf(v.state, name) }

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// apply folds one message into v. On error v is unchanged. remote is the connection's
// remote address (for the OTLP address when the config listens on every interface);
// regionAttr and fallbackRegion give the region.
func (v *agentView) apply(m *protobufs.AgentToServer, remote, regionAttr, fallbackRegion string, now time.Time) error {
	next := *v
	if d := m.GetAgentDescription(); d != nil {
		id, err := attributes("agent_description.identifying_attributes", d.GetIdentifyingAttributes())
		if err != nil {
			return err
		}
		non, err := attributes("agent_description.non_identifying_attributes", d.GetNonIdentifyingAttributes())
		if err != nil {
			return err
		}
		next.state.Identifying, next.state.NonIdentifying = id, non
		next.described = true
		region, ok := next.attr(regionAttr)
		if !ok || region == "" {
			region = fallbackRegion
		}
		if err := events.CheckToken("region", region); err != nil {
			return fmt.Errorf("%w: attribute %s: %w", ErrRefused, regionAttr, err)
		}
		cid, ok := next.attr(attrServiceInstanceID)
		if !ok || cid == "" {
			cid = next.state.UID
		}
		if err := events.CheckToken("collector id", cid); err != nil {
			return fmt.Errorf("%w: attribute %s: %w", ErrRefused, attrServiceInstanceID, err)
		}
		next.state.Region, next.state.ID = region, cid
		next.state.Version, _ = next.attr(attrServiceVersion)
		if addr, ok := next.attr(AddressAttribute); ok {
			if _, _, err := net.SplitHostPort(addr); err != nil {
				return fmt.Errorf("%w: attribute %s %q: want host:port", ErrRefused, AddressAttribute, addr)
			}
			next.address = addr
		}
	}
	if m.GetCapabilities() != 0 || next.caps == 0 {
		next.caps = m.GetCapabilities()
		next.state.Capabilities = capabilityNames(next.caps)
	}
	if h := m.GetHealth(); h != nil {
		health, root, err := mapHealth(h)
		if err != nil {
			return err
		}
		next.health, next.state.Health = health, root
	}
	if ec := m.GetEffectiveConfig(); ec != nil {
		hash, addr := effectiveConfig(ec.GetConfigMap(), remote)
		next.state.EffectiveConfigHash = hash
		if _, fromAttr := next.attr(AddressAttribute); !fromAttr {
			next.address = addr
		}
	}
	next.wantComponents = false
	if ac := m.GetAvailableComponents(); ac != nil {
		if len(ac.GetHash()) > 64 {
			return fmt.Errorf("%w: available_components.hash: %d bytes, at most 64", ErrRefused, len(ac.GetHash()))
		}
		switch {
		case len(ac.GetComponents()) > 0:
			comps, err := components(ac)
			if err != nil {
				return err
			}
			next.state.Components, next.componentsHash = comps, slices.Clone(ac.GetHash())
		case !bytes.Equal(ac.GetHash(), next.componentsHash):
			next.wantComponents = true
		}
	}
	if rs := m.GetRemoteConfigStatus(); rs != nil {
		status := strings.TrimPrefix(rs.GetStatus().String(), "RemoteConfigStatuses_")
		switch status {
		case events.RemoteConfigUnset, events.RemoteConfigApplying, events.RemoteConfigApplied, events.RemoteConfigFailed:
		default:
			return fmt.Errorf("%w: remote_config_status.status %d is not a known status", ErrRefused, rs.GetStatus())
		}
		if len(rs.GetLastRemoteConfigHash()) > 64 {
			return fmt.Errorf("%w: remote_config_status.last_remote_config_hash: %d bytes, at most 64", ErrRefused, len(rs.GetLastRemoteConfigHash()))
		}
		next.remoteHash = slices.Clone(rs.GetLastRemoteConfigHash())
		next.state.RemoteConfig = events.RemoteConfigStatus{
			Hash: hex.EncodeToString(rs.GetLastRemoteConfigHash()), Status: status,
			Error: truncate(rs.GetErrorMessage(), maxText),
		}
	}
	next.state.UpdatedAt = now
	*v = next
	return nil
}

// mapHealth turns the health tree into the registration's health and the root as
// stored: unhealthy root → unhealthy; healthy root with an unhealthy component anywhere
// → degraded; else healthy. Each unhealthy component (at most maxChecks) is a check.
func mapHealth(h *protobufs.ComponentHealth) (events.Health, events.AgentHealth, error) {
	root := events.AgentHealth{
		Healthy: h.GetHealthy(), Status: truncate(h.GetStatus(), maxText), LastError: truncate(h.GetLastError(), maxText),
	}
	if ns := h.GetStartTimeUnixNano(); ns > 0 && ns < 1<<62 {
		root.StartTime = time.Unix(0, int64(ns)).UTC()
	}
	nodes := 0
	var bad []events.CheckResult
	var walk func(name string, c *protobufs.ComponentHealth, depth int) error
	walk = func(name string, c *protobufs.ComponentHealth, depth int) error {
		if depth > maxHealthDepth {
			return fmt.Errorf("%w: health: deeper than %d levels", ErrRefused, maxHealthDepth)
		}
		for _, k := range slices.Sorted(maps.Keys(c.GetComponentHealthMap())) {
			nodes++
			if nodes > maxHealthNodes {
				return fmt.Errorf("%w: health: more than %d components", ErrRefused, maxHealthNodes)
			}
			child := c.GetComponentHealthMap()[k]
			path := truncate(k, maxAttrKey)
			if name != "" {
				path = name + "/" + path
			}
			if !child.GetHealthy() && len(bad) < maxChecks {
				msg := child.GetLastError()
				if msg == "" {
					msg = child.GetStatus()
				}
				bad = append(bad, events.CheckResult{Name: truncate(path, maxAttrKey), Status: events.HealthUnhealthy, Message: truncate(msg, maxText)})
			}
			if err := walk(path, child, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk("", h, 0); err != nil {
		return events.Health{}, events.AgentHealth{}, err
	}
	out := events.Health{Status: events.HealthHealthy}
	rootCheck := events.CheckResult{Name: "opamp", Status: events.HealthHealthy, Message: root.Status}
	switch {
	case !root.Healthy:
		out.Status = events.HealthUnhealthy
		rootCheck.Status = events.HealthUnhealthy
		if root.LastError != "" {
			rootCheck.Message = root.LastError
		}
	case len(bad) > 0:
		out.Status = events.HealthDegraded
		for i := range bad {
			bad[i].Status = events.HealthDegraded
		}
	}
	out.Checks = append([]events.CheckResult{rootCheck}, bad...)
	return out, root, nil
}

// components lists "<kind>/<type>" from the available components (kinds "receivers",
// "exporters", ... are singular in the result), sorted.
func components(ac *protobufs.AvailableComponents) ([]string, error) {
	var out []string
	for kind, d := range ac.GetComponents() {
		k := strings.TrimSuffix(kind, "s")
		for typ := range d.GetSubComponentMap() {
			if len(out) >= maxComponents {
				return nil, fmt.Errorf("%w: available_components: more than %d", ErrRefused, maxComponents)
			}
			if events.CheckToken("component", typ) != nil || events.CheckToken("component kind", k) != nil {
				return nil, fmt.Errorf("%w: available_components: %q/%q is not a component name", ErrRefused, truncate(kind, 64), truncate(typ, 64))
			}
			out = append(out, k+"/"+typ)
		}
	}
	slices.Sort(out)
	return out, nil
}

// effectiveConfig hashes the effective config map (sha256 over sorted names and bodies)
// and derives the collector's OTLP address from its otlp receiver (gRPC first, then
// HTTP); an endpoint on every interface takes the host of remote; a loopback one or none
// gives "".
func effectiveConfig(cm *protobufs.AgentConfigMap, remote string) (hash, addr string) {
	files := cm.GetConfigMap()
	if len(files) == 0 {
		return "", ""
	}
	h := sha256.New()
	names := slices.Sorted(maps.Keys(files))
	for _, name := range names {
		body := files[name].GetBody()
		fmt.Fprintf(h, "%d:%s%d:", len(name), name, len(body))
		h.Write(body)
	}
	hash = hex.EncodeToString(h.Sum(nil))
	for _, name := range names {
		if a := otlpAddress(files[name].GetBody(), remote); a != "" {
			return hash, a
		}
	}
	return hash, ""
}

// otlpAddress reads receivers.otlp[/name].protocols.{grpc,http}.endpoint from a
// collector YAML document.
func otlpAddress(body []byte, remote string) string {
	var doc struct {
		Receivers map[string]struct {
			Protocols map[string]struct {
				Endpoint string `yaml:"endpoint"`
			} `yaml:"protocols"`
		} `yaml:"receivers"`
	}
	if err := yaml.Unmarshal(body, &doc); err != nil {
		return ""
	}
	for _, name := range slices.Sorted(maps.Keys(doc.Receivers)) {
		if name != "otlp" && !strings.HasPrefix(name, "otlp/") {
			continue
		}
		for _, proto := range []string{"grpc", "http"} {
			p, ok := doc.Receivers[name].Protocols[proto]
			if !ok {
				continue
			}
			host, port, err := net.SplitHostPort(p.Endpoint)
			if err != nil {
				continue
			}
			remoteHost, _, _ := net.SplitHostPort(remote)
			switch {
			case host == "" || isUnspecified(host):
				if remoteHost == "" {
					return ""
				}
				host = remoteHost
			case isLoopback(host) && !isLoopback(remoteHost):
				return "" // reachable from the collector's own host only
			}
			return net.JoinHostPort(host, port)
		}
	}
	return ""
}

func isUnspecified(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}
