package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Parse decodes a config file strictly (yaml.v3 with KnownFields): unknown
// keys, wrong types and bad durations fail, each error naming the field by
// its path and line ("routes[0].sticky.ttl: "five" is not a duration such
// as 30s or 5m (line 4)"). An empty file is an empty config. The config
// keeps each field's line, for Compile's errors.
func Parse(data []byte) (Config, error) {
	var cfg Config
	if len(bytes.TrimSpace(data)) == 0 {
		return cfg, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(&cfg)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	var te *yaml.TypeError
	if err != nil && !errors.As(err, &te) {
		return Config{}, syntaxError(data, err)
	}
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root) // it parsed: at most the types were wrong
	paths := nodePaths(&root)
	if err == nil {
		// Validation names fields by path; keep each path's line for it.
		cfg.src = &source{lines: make(map[string]int, len(paths))}
		for _, np := range paths {
			cfg.src.lines[np.path] = np.line
		}
		return cfg, nil
	}
	errs := make([]error, 0, len(te.Errors))
	for _, msg := range te.Errors {
		errs = append(errs, typeError(paths, msg))
	}
	return Config{}, errors.Join(errs...)
}

// syntaxError reports a YAML syntax error at the line where the document
// stops being valid YAML. yaml.v3 names the line where the enclosing
// construct began (a tab on line 3 of a list is reported on line 2), so the
// line is found again here: the first line after the longest prefix of the
// file that still parses.
func syntaxError(data []byte, err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: ")
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		msg = msg[len(m[0]):]
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	line := len(lines)
	for l := len(lines) - 1; l >= 1; l-- {
		var n yaml.Node
		if yaml.Unmarshal(bytes.Join(lines[:l], nil), &n) == nil {
			line = l + 1
			break
		}
		line = l
	}
	return fmt.Errorf("line %d: %s", line, msg)
}

var (
	lineRE    = regexp.MustCompile(`^line (\d+): `)
	unknownRE = regexp.MustCompile("^field (\\S+) not found in type")
	cannotRE  = regexp.MustCompile("^cannot unmarshal (\\S+)(?: `(.*)`)? into (\\S+)$")
)

// typeError turns one of yaml.v3's type errors ("line 4: cannot unmarshal
// !!str `five` into time.Duration") into one naming the field.
func typeError(paths []nodePath, msg string) error {
	m := lineRE.FindStringSubmatch(msg)
	if m == nil {
		return errors.New(msg)
	}
	line, _ := strconv.Atoi(m[1])
	msg = msg[len(m[0]):]
	if u := unknownRE.FindStringSubmatch(msg); u != nil {
		return fmt.Errorf("%s: unknown field (line %d)", pathAt(paths, line, u[1], true), line)
	}
	if c := cannotRE.FindStringSubmatch(msg); c != nil {
		kind, value, into := c[1], c[2], c[3]
		return fmt.Errorf("%s: %s (line %d)", pathAt(paths, line, value, false), describe(kind, value, into), line)
	}
	return fmt.Errorf("%s: %s (line %d)", pathAt(paths, line, "", false), msg, line)
}

// describe says what was wrong with a value, in the user's terms.
func describe(kind, value, into string) string {
	switch {
	case kind == "!!map" || kind == "!!seq":
		if strings.HasPrefix(into, "[]") || strings.HasPrefix(into, "config.List") {
			return "want a list"
		}
		if strings.HasPrefix(into, "config.") {
			return "want a mapping"
		}
		return "want a single value"
	case strings.HasPrefix(into, "[]") || strings.HasPrefix(into, "config.Opt[[]"):
		return "want a list"
	case into == "time.Duration":
		return fmt.Sprintf("%q is not a duration such as 30s or 5m", value)
	case into == "bool":
		return fmt.Sprintf("%q is not true or false", value)
	case strings.HasPrefix(into, "int"):
		return fmt.Sprintf("%q is not an integer", value)
	case strings.HasPrefix(into, "uint"):
		return fmt.Sprintf("%q is not a non-negative integer", value)
	case strings.HasPrefix(into, "float"):
		return fmt.Sprintf("%q is not a number", value)
	case strings.HasPrefix(into, "config."):
		return "want a mapping"
	}
	return fmt.Sprintf("%q is not a %s", value, into)
}

// nodePath is where a key (or a list item) of the document sits.
type nodePath struct {
	line  int
	key   string // the key's own name ("" for list items)
	value string // the scalar value, if any
	path  string // "routes[0].sticky.ttl"
}

// nodePaths lists every key and list item of the document with its path.
func nodePaths(root *yaml.Node) []nodePath {
	var out []nodePath
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				out = append(out, nodePath{line: k.Line, key: k.Value, value: v.Value, path: p})
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				out = append(out, nodePath{line: c.Line, value: c.Value, path: p})
				walk(c, p)
			}
		}
	}
	walk(root, "")
	return out
}

// pathAt finds the path of the field an error on line is about: the key
// named so (unknown fields), else the deepest entry on that line whose
// value matches, else the last entry on that line.
func pathAt(paths []nodePath, line int, name string, isKey bool) string {
	best := ""
	for _, p := range paths {
		if p.line != line {
			continue
		}
		switch {
		case isKey && p.key == name:
			return p.path
		case !isKey && name != "" && p.value == name:
			best = p.path
		case best == "":
			best = p.path
		}
	}
	if best == "" {
		return "config"
	}
	return best
}
