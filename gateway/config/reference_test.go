package config_test

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/latchgw/latch/gateway/config"
)

// referencePage is the handbook's configuration reference, from this
// package's folder.
const referencePage = "../../docs/configuration.md"

// The configuration reference (docs/configuration.md) is checked against
// the code, so it cannot drift: every key the config file accepts (the
// yaml tags of config.Config, walked with reflect) is in the page's
// reference YAML block and every key that block names is one latch
// accepts; every flag and LATCH_*/OTEL_* variable latch reads is on the
// page and every one the page names exists. A failure names the key.
func TestConfigReference(t *testing.T) {
	page, err := os.ReadFile(referencePage)
	if err != nil {
		t.Fatal(err)
	}
	block := referenceBlock(t, page)

	accepted, required := configKeys(reflect.TypeFor[config.Config]())
	documented := map[string]bool{}
	var root yaml.Node
	if err := yaml.Unmarshal(block, &root); err != nil {
		t.Fatalf("%s: the reference block is not YAML: %v", referencePage, err)
	}
	yamlKeys(&root, "", documented)
	for _, k := range required {
		if !documented[k] {
			t.Errorf("%s: config key %s is accepted by gateway/config but not documented in the reference block", referencePage, k)
		}
	}
	for _, k := range sortedKeys(documented) {
		if !accepted[k] {
			t.Errorf("%s: documents config key %s, which gateway/config does not accept", referencePage, k)
		}
	}
	// The block is a file latch reads, values and all.
	if _, err := config.Parse(block); err != nil {
		t.Errorf("%s: the reference block does not parse as a config file: %v", referencePage, err)
	}

	flags := latchFlags(t)
	text := string(page)
	for _, f := range flags {
		if !strings.Contains(text, "`-"+f) {
			t.Errorf("%s: flag -%s is not documented", referencePage, f)
		}
	}
	for _, f := range tableFlags(text) {
		if !slices.Contains(flags, f) {
			t.Errorf("%s: documents flag -%s, which latch does not have", referencePage, f)
		}
	}
	vars := append(config.EnvVars(), config.EnvOTLPEndpoint, config.EnvOTLPProtocol, config.EnvServiceName,
		config.EnvTracesSampler, config.EnvTracesSamplerArg, config.EnvResourceAttributes)
	for _, v := range vars {
		if !strings.Contains(text, v) {
			t.Errorf("%s: environment variable %s is not documented", referencePage, v)
		}
	}
	for _, v := range regexp.MustCompile(`\b(?:LATCH|OTEL)_[A-Z_]*[A-Z]\b`).FindAllString(text, -1) {
		if !slices.Contains(vars, v) {
			t.Errorf("%s: names environment variable %s, which latch does not read", referencePage, v)
		}
	}
}

// referenceBlock returns the first ```yaml block after the heading
// "## The configuration file".
func referenceBlock(t *testing.T, page []byte) []byte {
	t.Helper()
	_, rest, ok := bytes.Cut(page, []byte("\n## The configuration file\n"))
	if !ok {
		t.Fatalf("%s: no \"## The configuration file\" heading", referencePage)
	}
	_, rest, ok = bytes.Cut(rest, []byte("\n```yaml\n"))
	if !ok {
		t.Fatalf("%s: no ```yaml block under \"## The configuration file\"", referencePage)
	}
	block, _, ok := bytes.Cut(rest, []byte("\n```\n"))
	if !ok {
		t.Fatalf("%s: the reference ```yaml block does not end", referencePage)
	}
	return block
}

// configKeys walks a config type's yaml tags. accepted holds every key
// path a file may set ("tls.certificates[].cert_file"); required lists
// each once where its struct type is first reached, so the fields a route
// shares with defaults (RouteSettings, inlined in Route) are documented
// under defaults and accepted under routes[] too.
func configKeys(t reflect.Type) (accepted map[string]bool, required []string) {
	accepted = map[string]bool{}
	seen := map[reflect.Type]bool{}
	unmarshaler := reflect.TypeFor[yaml.Unmarshaler]()
	var walk func(t reflect.Type, prefix string, require bool)
	walk = func(t reflect.Type, prefix string, require bool) {
		if seen[t] {
			require = false
		}
		seen[t] = true
		for i := range t.NumField() {
			f := t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if opts == "inline" {
				walk(f.Type, prefix, require)
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			path := prefix + name
			accepted[path] = true
			if require {
				required = append(required, path)
			}
			ft := f.Type
			if reflect.PointerTo(ft).Implements(unmarshaler) {
				continue // a leaf with its own YAML form (Opt, List)
			}
			switch {
			case ft.Kind() == reflect.Struct:
				walk(ft, path+".", require)
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				walk(ft.Elem(), path+"[].", require)
			}
		}
	}
	walk(t, "", true)
	return accepted, required
}

// yamlKeys adds the key paths of a YAML document to keys, in configKeys'
// form.
func yamlKeys(n *yaml.Node, prefix string, keys map[string]bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			yamlKeys(c, prefix, keys)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			path := prefix + n.Content[i].Value
			keys[path] = true
			yamlKeys(n.Content[i+1], path+".", keys)
		}
	case yaml.SequenceNode:
		p := strings.TrimSuffix(prefix, ".") + "[]."
		for _, c := range n.Content {
			if c.Kind == yaml.MappingNode {
				yamlKeys(c, p, keys)
			}
		}
	}
}

// latchFlags lists the flags latch's command line takes, from its usage.
func latchFlags(t *testing.T) []string {
	t.Helper()
	var usage bytes.Buffer
	_, err := config.Load([]string{"-h"}, func(string) string { return "" }, &usage)
	if !errors.Is(err, config.ErrHelp) {
		t.Fatalf("latch -h: %v", err)
	}
	var flags []string
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z][a-z-]*)`).FindAllStringSubmatch(usage.String(), -1) {
		flags = append(flags, m[1])
	}
	if len(flags) < 10 {
		t.Fatalf("latch -h lists %d flags: %q", len(flags), usage.String())
	}
	return flags
}

// tableFlags lists the flags the page's flag table names in its first
// column.
func tableFlags(page string) []string {
	var flags []string
	for _, line := range strings.Split(page, "\n") {
		if !strings.HasPrefix(line, "| `-") {
			continue
		}
		cell, _, _ := strings.Cut(line[1:], "|")
		for _, m := range regexp.MustCompile("`-([a-z][a-z-]*)").FindAllStringSubmatch(cell, -1) {
			flags = append(flags, m[1])
		}
	}
	return flags
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
