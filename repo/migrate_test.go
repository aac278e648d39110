package repo_test

import (
	"context"
	"errors"
	"testing"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/repo"
)

// The migrations themselves run against a real database in the
// conformance suite (conformance/repos.go, "Migrate/UpDown"), on every
// driver and pool mode.

func TestMigrateRefusesTransactionPoolerWithoutDirectURL(t *testing.T) {
	t.Parallel()
	cfg := driverconf.Config{URL: "postgres://app@127.0.0.1:6543/app"} // port 6543: transaction pooler
	for _, f := range []func(context.Context, driverconf.Config, ...repo.Option) error{repo.Migrate, repo.MigrateDown} {
		if err := f(context.Background(), cfg); !errors.Is(err, repo.ErrNeedDirectURL) {
			t.Errorf("err = %v, want ErrNeedDirectURL", err)
		}
	}
}
