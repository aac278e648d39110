package repo

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
)

// MaxBatchDomains is the most domain names one call takes:
// [Domains.BulkUpsert] or [Batches.Create].
const MaxBatchDomains = 10000

// DomainStatus is the state of a domain, as the schema's CHECK allows.
type DomainStatus string

// The domain statuses.
const (
	DomainStatusPending DomainStatus = "pending" // new, not scanned yet (the default)
	DomainStatusActive  DomainStatus = "active"
	DomainStatusBlocked DomainStatus = "blocked"
	DomainStatusError   DomainStatus = "error"
)

// Valid reports whether s is one of the domain statuses.
func (s DomainStatus) Valid() bool {
	switch s {
	case DomainStatusPending, DomainStatusActive, DomainStatusBlocked, DomainStatusError:
		return true
	}
	return false
}

// Domains stores the domains a tenant scrapes, by normalised name (see
// [NormalizeDomain]); a name is stored once per tenant.
type Domains struct{ base }

// Domain is a stored domain.
type Domain struct {
	ID       uuid.UUID `db:"id"`
	TenantID uuid.UUID `db:"tenant_id"`
	// Name is the normalised name, such as "xn--bcher-kva.de".
	Name      string       `db:"domain"`
	Status    DomainStatus `db:"status"`
	ScanCount int          `db:"scan_count"`
	// LastScannedAt is nil until the domain is first marked scanned.
	LastScannedAt *time.Time `db:"last_scanned_at"`
	CreatedAt     time.Time  `db:"created_at"`
	UpdatedAt     time.Time  `db:"updated_at"`
}

// DomainFilter narrows [Domains.List].
type DomainFilter struct {
	// Status keeps only domains in this status; "" keeps all.
	Status DomainStatus
}

// UpsertedDomain is one distinct domain of a [Domains.BulkUpsert] call.
type UpsertedDomain struct {
	ID   uuid.UUID `db:"id"`
	Name string    `db:"domain"` // normalised
	// Inserted is true when the call created the domain, false when it
	// existed already.
	Inserted bool `db:"inserted"`
}

// BulkUpsertResult is what [Domains.BulkUpsert] stored.
type BulkUpsertResult struct {
	// Domains holds each distinct normalised name once, in the order of
	// its first appearance in the input.
	Domains []UpsertedDomain
	// Index maps input positions to Domains: names[i] is
	// Domains[Index[i]].
	Index []int
	// Inserted counts the entries of Domains the call created.
	Inserted int
}

// IDs returns the id of each distinct domain, in the order of r.Domains.
func (r BulkUpsertResult) IDs() []uuid.UUID {
	ids := make([]uuid.UUID, len(r.Domains))
	for i, d := range r.Domains {
		ids[i] = d.ID
	}
	return ids
}

// ID returns the id of the domain names[i] of the call became.
func (r BulkUpsertResult) ID(i int) uuid.UUID { return r.Domains[r.Index[i]].ID }

// Upsert stores the domain name normalised (see [NormalizeDomain]) unless
// the tenant has it already, and returns the stored row either way. An
// existing row keeps its status and counters; its updated_at is bumped.
// An invalid name fails with a *[ValidationError] for field "name".
func (r *Domains) Upsert(ctx context.Context, tenant uuid.UUID, name string) (Domain, error) {
	if err := requireTenant(tenant); err != nil {
		return Domain{}, err
	}
	norm, err := normalizeField("name", name)
	if err != nil {
		return Domain{}, err
	}
	return getRow[Domain](ctx, r.base, "upsert domain", sqlDomainUpsert, tenant, norm)
}

// BulkUpsert upserts up to [MaxBatchDomains] names in one statement, as
// [Domains.Upsert] does one: it works the same on a *sqladapter.DB and on
// a transaction (repo.New(tx)), where it makes part of a larger write.
// Names are normalised first; forms of one name ("Example.com",
// "https://www.example.com/") collapse into one domain. Any invalid name
// rejects the whole call before anything is written, with a
// *[ValidationError] for field "names[i]" saying why. No names is no
// statement and an empty result.
//
// Concurrent calls with overlapping names are safe: each name ends up as
// one row and every call gets its id. Existing rows are not written: they
// keep their status, counters and updated_at, and stay locked (as by an
// update) until the surrounding transaction ends.
//
// On a *sqladapter.DB (or *sqlx.DB) with [BulkCopyMin] or more distinct
// names, the names travel by COPY into a table of the call's own
// transaction (pgx's CopyFrom, lib/pq's COPY FROM STDIN) and one INSERT …
// ON CONFLICT stores them: safe behind a transaction pooler, since the
// table lives and dies inside that transaction. The result is the same.
func (r *Domains) BulkUpsert(ctx context.Context, tenant uuid.UUID, names []string) (BulkUpsertResult, error) {
	if err := requireTenant(tenant); err != nil {
		return BulkUpsertResult{}, err
	}
	if len(names) > MaxBatchDomains {
		return BulkUpsertResult{}, invalid("names", "has %d names, more than the %d one call takes", len(names), MaxBatchDomains)
	}
	res := BulkUpsertResult{Domains: []UpsertedDomain{}, Index: make([]int, len(names))}
	pos := make(map[string]int, len(names)) // normalised name → index in res.Domains
	for i, raw := range names {
		norm, err := normalizeField(fmt.Sprintf("names[%d]", i), raw)
		if err != nil {
			return BulkUpsertResult{}, err
		}
		j, ok := pos[norm]
		if !ok {
			j = len(res.Domains)
			pos[norm] = j
			res.Domains = append(res.Domains, UpsertedDomain{Name: norm})
		}
		res.Index[i] = j
	}
	if len(res.Domains) == 0 {
		return res, nil
	}
	distinct := make([]string, len(res.Domains))
	for i, d := range res.Domains {
		distinct[i] = d.Name
	}
	slices.Sort(distinct)
	rows, err := r.bulkUpsert(ctx, tenant, distinct)
	if err != nil {
		return BulkUpsertResult{}, wrap("bulk upsert domains", err)
	}
	seen := 0
	for _, row := range rows {
		j, ok := pos[row.Name]
		if !ok || res.Domains[j].ID != uuid.Nil {
			return BulkUpsertResult{}, fmt.Errorf("bulk upsert domains: unexpected row for %s", quote(row.Name))
		}
		res.Domains[j] = row
		seen++
		if row.Inserted {
			res.Inserted++
		}
	}
	if seen != len(res.Domains) {
		return BulkUpsertResult{}, fmt.Errorf("bulk upsert domains: %d rows returned for %d names", seen, len(res.Domains))
	}
	return res, nil
}

// bulkUpsert stores the distinct sorted names and returns a row for each:
// by COPY when that pays and the querier can (see bulkUpsertCopy), else in
// one statement. A name that a concurrent call committed after the
// statement began is read by a second one.
func (r *Domains) bulkUpsert(ctx context.Context, tenant uuid.UUID, names []string) ([]UpsertedDomain, error) {
	if len(names) >= bulkCopyMin {
		if rows, ok, err := r.bulkUpsertCopy(ctx, tenant, names); ok || err != nil {
			return rows, err
		}
	}
	var rows []UpsertedDomain
	if err := r.q.SelectContext(ctx, &rows, r.sql(sqlDomainBulkUpsert), tenant, textArray(names)); err != nil {
		return nil, err
	}
	if len(rows) >= len(names) {
		return rows, nil
	}
	missing := missingNames(names, rows)
	var late []UpsertedDomain
	if err := r.q.SelectContext(ctx, &late, r.sql(sqlDomainBulkExisting), tenant, textArray(missing)); err != nil {
		return nil, err
	}
	return append(rows, late...), nil
}

// missingNames returns the names, sorted, that no row has.
func missingNames(names []string, rows []UpsertedDomain) []string {
	have := make(map[string]bool, len(rows))
	for _, row := range rows {
		have[row.Name] = true
	}
	var out []string
	for _, n := range names {
		if !have[n] {
			out = append(out, n)
		}
	}
	return out
}

// Get returns a domain of the tenant by id, or an error matching
// sqladapter.ErrNotFound.
func (r *Domains) Get(ctx context.Context, tenant, id uuid.UUID) (Domain, error) {
	return getRow[Domain](ctx, r.base, "get domain", sqlDomainGet, tenant, id)
}

// GetByName returns a domain of the tenant by name, in any form
// [NormalizeDomain] accepts, or an error matching sqladapter.ErrNotFound.
// An invalid name fails with a *[ValidationError] for field "name".
func (r *Domains) GetByName(ctx context.Context, tenant uuid.UUID, name string) (Domain, error) {
	if err := requireTenant(tenant); err != nil {
		return Domain{}, err
	}
	norm, err := normalizeField("name", name)
	if err != nil {
		return Domain{}, err
	}
	return getRow[Domain](ctx, r.base, "get domain by name", sqlDomainGetByName, tenant, norm)
}

// List returns one page of the tenant's domains that pass the filter,
// oldest first (ordered by creation time, then id).
func (r *Domains) List(ctx context.Context, tenant uuid.UUID, filter DomainFilter, page Page) (PageOf[Domain], error) {
	if err := requireTenant(tenant); err != nil {
		return PageOf[Domain]{}, err
	}
	if filter.Status != "" && !filter.Status.Valid() {
		return PageOf[Domain]{}, invalid("status", "%s is not a domain status (pending, active, blocked, error)", quote(string(filter.Status)))
	}
	stmt, args := sqlDomainList, []any{tenant}
	if filter.Status != "" {
		stmt, args = sqlDomainListByStatus, []any{tenant, string(filter.Status)}
	}
	return selectPage[Domain](ctx, r.base, "list domains", stmt, page, args...)
}

// SetStatus sets a domain's status and returns the stored row. An unknown
// status is invalid input; a missing domain matches sqladapter.ErrNotFound.
func (r *Domains) SetStatus(ctx context.Context, tenant, id uuid.UUID, status DomainStatus) (Domain, error) {
	if err := requireTenant(tenant); err != nil {
		return Domain{}, err
	}
	if !status.Valid() {
		return Domain{}, invalid("status", "%s is not a domain status (pending, active, blocked, error)", quote(string(status)))
	}
	return getRow[Domain](ctx, r.base, "set domain status", sqlDomainSetStatus, tenant, id, string(status))
}

// MarkScanned records a scan of a domain finished at at: scan_count grows
// by one and last_scanned_at becomes at, unless it is later already (scans
// reported out of order keep the latest time). It returns the stored row;
// a missing domain matches sqladapter.ErrNotFound, a zero at is invalid.
func (r *Domains) MarkScanned(ctx context.Context, tenant, id uuid.UUID, at time.Time) (Domain, error) {
	if err := requireTenant(tenant); err != nil {
		return Domain{}, err
	}
	if at.IsZero() {
		return Domain{}, invalid("at", "is the zero time")
	}
	return getRow[Domain](ctx, r.base, "mark domain scanned", sqlDomainMarkScanned, tenant, id, at)
}
