package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ParseConfigYAML decodes a config file strictly: unknown keys, wrong types
// and bad durations fail with the field's path ("routes[0].sticky.ttl: ...").
// yaml's own KnownFields names only the Go type, which does not tell a user
// which of their routes is wrong.
func ParseConfigYAML(data []byte) (Config, error) {
	var cfg Config
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) || len(bytes.TrimSpace(data)) == 0 {
			return cfg, nil // an empty file is an empty config
		}
		return cfg, fmt.Errorf("parsing config: %w", err)
	}
	if len(doc.Content) == 0 {
		return cfg, nil
	}
	var errs []error
	decodeNode(doc.Content[0], reflect.ValueOf(&cfg).Elem(), "", &errs)
	return cfg, errors.Join(errs...)
}

var durationType = reflect.TypeFor[time.Duration]()

func decodeNode(n *yaml.Node, v reflect.Value, path string, errs *[]error) {
	bad := func(format string, args ...any) {
		p := path
		if p == "" {
			p = "config"
		}
		*errs = append(*errs, fmt.Errorf("%s: %s (line %d)", p, fmt.Sprintf(format, args...), n.Line))
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // leave the zero value: "field:" with nothing after it
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		decodeNode(n, v.Elem(), path, errs)
		return
	}
	switch {
	case v.Type() == durationType:
		if n.Kind != yaml.ScalarNode {
			bad("want a duration such as 30s or 5m")
			return
		}
		d, err := time.ParseDuration(n.Value)
		if err != nil {
			bad("%q is not a duration such as 30s or 5m", n.Value)
			return
		}
		v.SetInt(int64(d))
		return
	case v.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			bad("want a mapping")
			return
		}
		fields := yamlFields(v)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			sub := key
			if path != "" {
				sub = path + "." + key
			}
			f, ok := fields[key]
			if !ok {
				*errs = append(*errs, fmt.Errorf("%s: unknown field (line %d)", sub, n.Content[i].Line))
				continue
			}
			decodeNode(n.Content[i+1], f, sub, errs)
		}
		return
	case v.Kind() == reflect.Slice:
		if n.Kind == yaml.ScalarNode && v.Type().Elem().Kind() == reflect.String {
			// A comma-separated string is accepted for lists of strings
			// ("policy: p2c, round_robin"), as the environment variables are.
			parts := splitList(n.Value)
			v.Set(reflect.ValueOf(parts))
			return
		}
		if n.Kind != yaml.SequenceNode {
			bad("want a list")
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			decodeNode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i), errs)
		}
		v.Set(s)
		return
	}
	if n.Kind != yaml.ScalarNode {
		bad("want a single value")
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(n.Value)
	case reflect.Bool:
		b, err := strconv.ParseBool(n.Value)
		if err != nil {
			bad("%q is not true or false", n.Value)
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		i, err := strconv.ParseInt(n.Value, 0, 64)
		if err != nil {
			bad("%q is not an integer", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Uint32:
		u, err := strconv.ParseUint(n.Value, 0, 32)
		if err != nil {
			bad("%q is not a non-negative integer", n.Value)
			return
		}
		v.SetUint(u)
	case reflect.Float64:
		f, err := strconv.ParseFloat(n.Value, 64)
		if err != nil {
			bad("%q is not a number", n.Value)
			return
		}
		v.SetFloat(f)
	default:
		bad("unsupported field type %s", v.Type())
	}
}

// yamlFields maps the yaml names of a struct's fields (inline structs
// flattened) to the settable field values.
func yamlFields(v reflect.Value) map[string]reflect.Value {
	out := map[string]reflect.Value{}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if opts == "inline" {
			for k, fv := range yamlFields(v.Field(i)) {
				out[k] = fv
			}
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		out[name] = v.Field(i)
	}
	return out
}

// splitList splits "a, b,c" into [a b c], dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
