package config

import "testing"

// FuzzParse: any bytes either parse or fail with an error; never a panic,
// and a config that compiles compiles again from its defaulted form.
func FuzzParse(f *testing.F) {
	f.Add([]byte("routes:\n  - service: web\n"))
	f.Add([]byte("listen: \":80\"\nroutes:\n  - service: web\n    sticky:\n      ttl: 5m\n"))
	f.Add([]byte("defaults:\n  policy: p2c, round_robin\nroutes: [{service: a, host: x, path_prefix: /a}]\n"))
	f.Add([]byte("routes: &a [*a]\n"))
	f.Add([]byte("server: {max_header_bytes: 0x10000}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			return
		}
		c, err := cfg.Compile()
		if err != nil {
			return
		}
		if _, err := c.Config().Compile(); err != nil {
			t.Fatalf("a compiled config does not compile again: %v", err)
		}
	})
}
