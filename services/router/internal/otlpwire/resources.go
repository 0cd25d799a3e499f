package otlpwire

import "errors"

// EveryResourceHas reports whether req — one or more concatenated encoded
// Export*ServiceRequest messages of sig — holds at least one resource and every
// resource carries a string attribute named key. It reads only resource headers (no
// item), and a request it cannot read is false.
func EveryResourceHas(sig Signal, req []byte, key string) bool {
	name := "resource_spans"
	switch sig {
	case Logs:
		name = "resource_logs"
	case Metrics:
		name = "resource_metrics"
	}
	want := []byte(key)
	n := 0
	err := walkResources(req, name, func(_, start, end int) error {
		n++
		for off := start; off < end; {
			f, err := nextField(req, off, end)
			if err != nil {
				return err
			}
			off = f.end
			if f.num != fieldResource || wantBytes(f, "resource") != nil {
				continue
			}
			v, err := stringAttr(req[f.vstart:f.end], want)
			if err != nil {
				return err
			}
			if v != nil {
				return nil
			}
		}
		return errNotAll
	})
	return err == nil && n > 0
}

// errNotAll ends EveryResourceHas's walk at the first resource without the attribute.
var errNotAll = errors.New("a resource without the attribute")
