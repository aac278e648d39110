package driverconf

import (
	"database/sql/driver"

	"github.com/lib/pq"
)

// pqConnector builds a lib/pq connector for r. It always sets
// binary_parameters, so a query with arguments is one round trip with the
// unnamed statement (lib/pq's default would Parse/Describe/Sync first, and
// through a transaction pooler the second half can reach another server
// connection).
func pqConnector(r *resolved) (driver.Connector, error) {
	pc, err := pq.NewConfig(r.dsn())
	if err != nil {
		return nil, fieldErr("URL", "rejected by lib/pq: %s", r.scrub(err.Error()))
	}
	pc.BinaryParameters = true
	if pc.Runtime == nil {
		pc.Runtime = map[string]string{}
	}
	switch r.cfg.PoolMode {
	case Transaction, Session:
		// Poolers refuse startup parameters they do not track.
		pc.Options = ""
		clear(pc.Runtime)
	case Direct:
		for _, s := range r.startupSettings() {
			pc.Runtime[s[0]] = s[1]
		}
	}
	c, err := pq.NewConnectorConfig(pc)
	if err != nil {
		return nil, fieldErr("URL", "rejected by lib/pq: %s", r.scrub(err.Error()))
	}
	return c, nil
}
