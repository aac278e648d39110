package repo

// The statements of Domains. Each is a constant with a {schema}
// placeholder (see base.sql).

const domainColumns = `id, tenant_id, domain, status, scan_count, last_scanned_at, created_at, updated_at`

// An existing row is "updated" only so that RETURNING yields it: the
// statement locks it (FOR NO KEY UPDATE strength, since updated_at is no
// key column) and returns it even when another transaction committed it
// after this statement began, which ON CONFLICT DO NOTHING would not.
const sqlDomainUpsert = `INSERT INTO {schema}.domains (tenant_id, domain)
VALUES ($1, $2)
ON CONFLICT (tenant_id, domain) DO UPDATE SET updated_at = now()
RETURNING ` + domainColumns

// The names arrive distinct and are inserted in sorted order, so concurrent
// calls with overlapping names lock rows in the same order and cannot
// deadlock each other. A name that exists already is not written again:
// its row is read and locked (FOR NO KEY UPDATE, the strength an update of
// a non-key column takes) until the surrounding transaction ends. A row
// that a concurrent call committed after this statement began is skipped
// by ON CONFLICT DO NOTHING and is not in this statement's snapshot either:
// Domains.BulkUpsert reads the names missing from the result with
// sqlDomainBulkExisting, a statement of its own whose snapshot has them.
const sqlDomainBulkUpsert = `WITH ins AS (
	INSERT INTO {schema}.domains AS d (tenant_id, domain)
	SELECT $1::uuid, n.name FROM unnest($2::text[]) AS n(name) ORDER BY n.name
	ON CONFLICT (tenant_id, domain) DO NOTHING
	RETURNING d.id, d.domain
)
SELECT id, domain, true AS inserted FROM ins
UNION ALL
SELECT e.id, e.domain, false FROM (
	SELECT d.id, d.domain FROM {schema}.domains d
	WHERE d.tenant_id = $1 AND d.domain = ANY($2::text[])
	ORDER BY d.domain
	FOR NO KEY UPDATE
) e`

// sqlDomainBulkExisting reads (and locks, as sqlDomainBulkUpsert does)
// existing domains of the tenant by name.
const sqlDomainBulkExisting = `SELECT d.id, d.domain, false AS inserted FROM {schema}.domains d
WHERE d.tenant_id = $1 AND d.domain = ANY($2::text[])
ORDER BY d.domain
FOR NO KEY UPDATE`

// sqlDomainCopyExisting reads the domains of the tenant by name, inside
// the transaction of Domains.BulkUpsert's COPY (so without a lock: none
// would outlive the call).
const sqlDomainCopyExisting = `SELECT d.id, d.domain, false AS inserted FROM {schema}.domains d
WHERE d.tenant_id = $1 AND d.domain = ANY($2::text[])`

const sqlDomainGet = `SELECT ` + domainColumns + `
FROM {schema}.domains
WHERE tenant_id = $1 AND id = $2`

const sqlDomainGetByName = `SELECT ` + domainColumns + `
FROM {schema}.domains
WHERE tenant_id = $1 AND domain = $2`

const sqlDomainList = `SELECT ` + domainColumns + `
FROM {schema}.domains
WHERE tenant_id = $1 AND (created_at, id) > ($2::timestamptz, $3::uuid)
ORDER BY created_at, id
LIMIT $4 OFFSET $5`

const sqlDomainListByStatus = `SELECT ` + domainColumns + `
FROM {schema}.domains
WHERE tenant_id = $1 AND status = $2 AND (created_at, id) > ($3::timestamptz, $4::uuid)
ORDER BY created_at, id
LIMIT $5 OFFSET $6`

const sqlDomainSetStatus = `UPDATE {schema}.domains SET status = $3
WHERE tenant_id = $1 AND id = $2
RETURNING ` + domainColumns

const sqlDomainMarkScanned = `UPDATE {schema}.domains SET
	last_scanned_at = GREATEST(last_scanned_at, $3::timestamptz),
	scan_count = scan_count + 1
WHERE tenant_id = $1 AND id = $2
RETURNING ` + domainColumns
