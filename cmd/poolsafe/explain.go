package main

import (
	"fmt"
	"io"
	"os"

	"github.com/scrapersky/poolsafe/driverconf"
)

func explain(args []string, stdout, stderr io.Writer) int {
	var url string
	switch len(args) {
	case 0:
		url = os.Getenv(driverconf.EnvDatabaseURL)
		if url == "" {
			fmt.Fprintf(stderr, "poolsafe explain: no URL: give one, or set %s\n", driverconf.EnvDatabaseURL)
			return exitUsage
		}
	case 1:
		url = args[0]
	default:
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cfg, err := driverconf.Parse(url)
	if err != nil {
		fmt.Fprintf(stderr, "poolsafe explain: %v\n", err)
		return exitUsage
	}
	fmt.Fprint(stdout, cfg.Explain())
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "poolsafe explain: %v\n", err)
		return exitUsage
	}
	return exitOK
}
