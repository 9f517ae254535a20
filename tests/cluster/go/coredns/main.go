// Command coredns is CoreDNS (github.com/coredns/coredns) with only the plugins the
// real node's cluster DNS uses, so the build stays small: the service names of the
// cluster (kubernetes), health/ready probes, a cache, errors and logs. Built by
// tests/cluster/build.sh; CoreDNS's own main imports every plugin of plugin.cfg.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

// The plugin chain's order is CoreDNS's own (dnsserver.Directives, from plugin.cfg).
var _ = dnsserver.Directives

func main() { coremain.Run() }
