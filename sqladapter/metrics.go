package sqladapter

import (
	"database/sql"
	"sync/atomic"
)

// Metrics counts what connections from [NewConnector] and a [DB] did. The
// zero value is ready to use; share one between the connector and the DB.
type Metrics struct {
	queries   atomic.Int64
	txRetries atomic.Int64
	errors    [KindPoolerIncompatible + 1]atomic.Int64
}

func (m *Metrics) countQuery() { m.queries.Add(1) }

func (m *Metrics) countError(k Kind) {
	if k >= 0 && int(k) < len(m.errors) {
		m.errors[k].Add(1)
	}
}

func (m *Metrics) countRetry() { m.txRetries.Add(1) }

// Stats is sql.DBStats plus poolsafe's counters.
type Stats struct {
	sql.DBStats
	// Queries counts statements sent (including failed ones).
	Queries int64
	// Errors counts failed statements by kind; kinds with no errors are absent.
	Errors map[Kind]int64
	// TxRetries counts transactions InTx ran again after a serialization
	// failure, deadlock or connection failure.
	TxRetries int64
	// Replicas are the replicas' states (see WithReplicas), and
	// PrimaryReads the reads that asked for a replica but went to the
	// primary because none qualified.
	Replicas     []ReplicaStats
	PrimaryReads int64
}

func (m *Metrics) snapshot(s sql.DBStats) Stats {
	st := Stats{DBStats: s, Errors: map[Kind]int64{}}
	if m == nil {
		return st
	}
	st.Queries = m.queries.Load()
	st.TxRetries = m.txRetries.Load()
	for k := range m.errors {
		if n := m.errors[k].Load(); n > 0 {
			st.Errors[Kind(k)] = n
		}
	}
	return st
}
