// Command portcheck tells `make demo` (integration/tools/demo.sh) whether
// the ports it is about to use are free, by binding each the way the
// demo's services will. Each argument is one port:
//
//	"PROTO HOST:PORT VARIABLE WHAT"   e.g. "udp 127.0.0.1:8501 LATCH_DEMO_CONSUL Consul serf LAN"
//
// It prints one line per busy (or twice named) port, naming the variable
// that moves it, and exits 1 if there was any.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
)

func main() {
	busy := 0
	seen := map[string]string{}
	var open []io.Closer
	for _, arg := range os.Args[1:] {
		f := strings.SplitN(arg, " ", 4)
		if len(f) != 4 {
			fmt.Fprintf(os.Stderr, "portcheck: %q is not \"PROTO HOST:PORT VARIABLE WHAT\"\n", arg)
			os.Exit(2)
		}
		proto, addr, variable, what := f[0], f[1], f[2], f[3]
		_, port, _ := net.SplitHostPort(addr)
		if other, dup := seen[proto+" "+port]; dup {
			fmt.Printf("demo: port %s/%s is given to both %s and %s: set %s to another port\n", port, proto, other, what, variable)
			busy++
			continue
		}
		seen[proto+" "+port] = what
		var c io.Closer
		var err error
		if proto == "udp" {
			c, err = net.ListenPacket(proto, addr)
		} else {
			c, err = net.Listen(proto, addr)
		}
		if err != nil {
			fmt.Printf("demo: port %s/%s (%s) is in use: stop what holds it, or set %s to move the demo (%v)\n",
				port, proto, what, variable, err)
			busy++
			continue
		}
		open = append(open, c)
	}
	for _, c := range open {
		c.Close()
	}
	if busy > 0 {
		os.Exit(1)
	}
}
