// Command certs writes throw-away TLS certificates for the compose stack and local runs
// (`make certs`): a CA, a server certificate for the given hosts and a client
// certificate, valid for 30 days by default. Never for production.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/otelfleet/otelfleet/pkg/testcerts"
)

func main() {
	dir := flag.String("dir", ".certs", "directory to write ca.crt, server.crt/.key and client.crt/.key to")
	hosts := flag.String("hosts", "localhost,127.0.0.1,nats,router", "comma-separated DNS names and IPs of the server certificate")
	client := flag.String("client", "otelfleet", "common name of the client certificate")
	valid := flag.Duration("valid", 30*24*time.Hour, "validity of every certificate")
	flag.Parse()
	var hs []string
	for _, h := range strings.Split(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hs = append(hs, h)
		}
	}
	if len(hs) == 0 || *valid <= 0 {
		fmt.Fprintln(os.Stderr, "certs: --hosts must name at least one host and --valid must be positive")
		os.Exit(2)
	}
	s, err := testcerts.WriteSet(*dir, *valid, *client, hs...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "certs:", err)
		os.Exit(1)
	}
	fmt.Printf("throw-away certificates in %s (CA %s; server for %s; client %q), valid %v\n", s.Dir, s.CAFile, strings.Join(hs, ","), *client, *valid)
}
