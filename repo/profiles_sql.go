package repo

// The statements of Profiles. Each is a constant with a {schema}
// placeholder (see base.sql).

const profileColumns = `id, tenant_id, email, display_name, attributes, created_at, updated_at`

const sqlProfileInsert = `INSERT INTO {schema}.profiles (tenant_id, email, display_name, attributes)
VALUES ($1, $2, $3, $4::jsonb)
RETURNING ` + profileColumns

const sqlProfileGet = `SELECT ` + profileColumns + `
FROM {schema}.profiles
WHERE tenant_id = $1 AND id = $2`

const sqlProfileUpdate = `UPDATE {schema}.profiles SET
	email = COALESCE($3::text, email),
	display_name = COALESCE($4::text, display_name),
	attributes = COALESCE($5::jsonb, attributes)
WHERE tenant_id = $1 AND id = $2
RETURNING ` + profileColumns

const sqlProfileDelete = `DELETE FROM {schema}.profiles WHERE tenant_id = $1 AND id = $2`

const sqlProfileList = `SELECT ` + profileColumns + `
FROM {schema}.profiles
WHERE tenant_id = $1 AND (created_at, id) > ($2::timestamptz, $3::uuid)
ORDER BY created_at, id
LIMIT $4 OFFSET $5`
