package sqladapter

import (
	"context"
	"database/sql/driver"

	"github.com/jackc/pgx/v5/stdlib"
)

// pgxDescribe sends an unnamed Parse/Describe/Sync: one self-contained
// round trip; the unnamed statement is replaced by the next Parse on that
// server connection, whoever sends it.
func pgxDescribe(ctx context.Context, dc driver.Conn, query string) ([]string, error) {
	sc, ok := dc.(*stdlib.Conn)
	if !ok {
		return nil, errNotDescribable
	}
	pc := sc.Conn()
	sd, err := pc.PgConn().Prepare(ctx, "", query, nil)
	if err != nil {
		return nil, err
	}
	types := make([]string, len(sd.ParamOIDs))
	for i, oid := range sd.ParamOIDs {
		if t, ok := pc.TypeMap().TypeForOID(oid); ok {
			types[i] = t.Name
		}
	}
	return types, nil
}
