// A Go reader as Go programs read a stream: os.Open, then Read in a loop. os.Open registers
// the descriptor with Go's runtime poller (edge-triggered epoll) and makes it non-blocking, so
// each Read that finds nothing waits for a poll notification from mqfs.
//
// Usage: reader PATH COUNT. Prints READY once open, then "GOT <message>" for each of COUNT
// messages. Exits 2 if a message takes longer than 8 s (TIMEOUT), 3 if the descriptor is not
// in the runtime poller (the test would prove nothing), 1 on any other error.
package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

func main() {
	path := os.Args[1]
	count, err := strconv.Atoi(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad count:", err)
		os.Exit(1)
	}
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("READY")
	buf := make([]byte, 4096)
	for got := 0; got < count; got++ {
		// Deadlines work only on descriptors in the runtime poller.
		if err := f.SetReadDeadline(time.Now().Add(8 * time.Second)); err != nil {
			fmt.Println("NOT-POLLED", err)
			os.Exit(3)
		}
		n, err := f.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			fmt.Println("TIMEOUT")
			os.Exit(2)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("GOT %s\n", buf[:n])
	}
}
