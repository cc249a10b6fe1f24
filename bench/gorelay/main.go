// Command gorelay is a bare TCP relay, two io.Copy per connection and
// nothing else, for bench/pg.sh: what any Go proxy pays per transaction
// on the machine (the runtime's scheduler and netpoller, a read and a
// write per message each way), beside which Vigil's own cost shows.
//
//	gorelay LISTEN-ADDR UPSTREAM-ADDR
package main

import (
	"fmt"
	"io"
	"net"
	"os"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: gorelay LISTEN-ADDR UPSTREAM-ADDR")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "gorelay:", err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "gorelay: accept:", err)
			os.Exit(1)
		}
		go relay(c, os.Args[2])
	}
}

// relay copies c to a new connection to upstream and back until either
// side closes.
func relay(c net.Conn, upstream string) {
	defer c.Close()
	u, err := net.Dial("tcp", upstream)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gorelay: dial:", err)
		return
	}
	defer u.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(u, c)
		u.Close()
		close(done)
	}()
	io.Copy(c, u)
	c.Close()
	<-done
}
