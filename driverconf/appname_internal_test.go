package driverconf

import (
	"strings"
	"testing"
)

// An application_name given empty is sent empty (as the drivers send it),
// not dropped: a driver given none takes PGAPPNAME from the environment.
func TestDSNEmptyApplicationName(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cfg  Config
		want string // "" for no application_name key at all
	}{
		{Config{URL: "host=h application_name='' fallback_application_name=fb"}, "application_name=''"},
		{Config{URL: "postgres://u@h/db?application_name="}, "application_name=''"},
		{Config{URL: "host=h fallback_application_name=fb"}, "application_name='fb'"},
		{Config{URL: "host=h application_name=''", ApplicationName: "mine"}, "application_name='mine'"},
		{Config{URL: "host=h"}, ""},
	} {
		dsn := mustResolve(t, c.cfg).dsn()
		if c.want == "" {
			if strings.Contains(dsn, "application_name") {
				t.Errorf("%+v: dsn %q names an application, want none", c.cfg, dsn)
			}
			continue
		}
		if !strings.Contains(" "+dsn+" ", " "+c.want+" ") {
			t.Errorf("%+v: dsn %q, want it to contain %s", c.cfg, dsn, c.want)
		}
	}
}
