// Command pause holds a pod's namespaces until it is told to stop: the
// cluster of scripts/kube.sh has no registry to pull the usual one from.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	<-c
}
