package session

import "testing"

// FuzzDecode: any value either fails or decodes to a cookie that encodes
// back to exactly the same value; Decode never panics.
func FuzzDecode(f *testing.F) {
	c := codec(f, oldSecret)
	f.Add(c.Encode(Cookie{ID: ID{1, 2, 3}, Hint: 99, Issued: 12345}))
	f.Add("")
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, v string) {
		got, ok := c.Decode(v)
		if ok && c.Encode(got) != v {
			t.Fatalf("Decode accepted %q, which re-encodes to %q", v, c.Encode(got))
		}
	})
}
