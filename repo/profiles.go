package repo

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"net/mail"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Profile limits, the same as the schema's CHECK constraints.
const (
	// MaxEmailLen is the longest email address accepted, in bytes.
	MaxEmailLen = 254
	// MaxDisplayNameLen is the longest display name accepted, in characters.
	MaxDisplayNameLen = 200
)

// Profiles stores user profiles. Email addresses are unique per tenant
// regardless of case.
type Profiles struct{ base }

// Profile is a stored profile.
type Profile struct {
	ID       uuid.UUID `db:"id"`
	TenantID uuid.UUID `db:"tenant_id"`
	// Email is the address as given (trimmed, case kept); it is unique in
	// the tenant ignoring case.
	Email       string `db:"email"`
	DisplayName string `db:"display_name"`
	// Attributes is a JSON object, "{}" when empty.
	Attributes json.RawMessage `db:"attributes"`
	CreatedAt  time.Time       `db:"created_at"`
	UpdatedAt  time.Time       `db:"updated_at"`
}

// NewProfile is the input of [Profiles.Create].
type NewProfile struct {
	// Email is required: a bare address such as "Ann@example.com" (no
	// display name or angle brackets). Surrounding spaces are trimmed; the
	// case is kept.
	Email string
	// DisplayName is optional: at most [MaxDisplayNameLen] characters,
	// surrounding spaces trimmed.
	DisplayName string
	// Attributes is optional: a JSON object. Empty means "{}".
	Attributes json.RawMessage
}

// ProfileUpdate is the input of [Profiles.Update]: a nil field keeps the
// stored value. Each set field is validated as in [NewProfile].
type ProfileUpdate struct {
	Email       *string
	DisplayName *string
	// Attributes replaces the stored object as a whole (it is not merged);
	// a pointer to an empty value resets it to "{}".
	Attributes *json.RawMessage
}

// ProfilePage is one page of [Profiles.List].
type ProfilePage struct {
	Items []Profile
	// NextCursor continues the list after Items (as Page.Cursor). It is
	// "" when the page is not full; a full page always has one, and the
	// page after it may be empty.
	NextCursor string
}

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

// Create stores a new profile. A profile with the same email in the tenant,
// in any case, makes it fail with an error matching
// sqladapter.ErrConflict; invalid input fails with a *[ValidationError]
// naming the field, before anything is written.
func (r *Profiles) Create(ctx context.Context, tenant uuid.UUID, in NewProfile) (Profile, error) {
	if err := requireTenant(tenant); err != nil {
		return Profile{}, err
	}
	email, err := cleanEmail(in.Email)
	if err != nil {
		return Profile{}, err
	}
	name, err := cleanDisplayName(in.DisplayName)
	if err != nil {
		return Profile{}, err
	}
	attrs, err := cleanAttributes(in.Attributes)
	if err != nil {
		return Profile{}, err
	}
	var p Profile
	if err := r.q.GetContext(ctx, &p, r.sql(sqlProfileInsert), tenant, email, name, attrs); err != nil {
		return Profile{}, wrap("create profile", err)
	}
	return p, nil
}

// Get returns a profile of the tenant, or an error matching
// sqladapter.ErrNotFound.
func (r *Profiles) Get(ctx context.Context, tenant, id uuid.UUID) (Profile, error) {
	return getRow[Profile](ctx, r.base, "get profile", sqlProfileGet, tenant, id)
}

// Update changes the set fields of a profile in one statement and returns
// the stored row. An update with no field set is invalid input; a missing
// profile (or one of another tenant) matches sqladapter.ErrNotFound; an
// email already used in the tenant matches sqladapter.ErrConflict.
func (r *Profiles) Update(ctx context.Context, tenant, id uuid.UUID, up ProfileUpdate) (Profile, error) {
	if err := requireTenant(tenant); err != nil {
		return Profile{}, err
	}
	if up.Email == nil && up.DisplayName == nil && up.Attributes == nil {
		return Profile{}, invalid("update", "sets no field")
	}
	var email, name, attrs any // nil: keep the stored value
	if up.Email != nil {
		e, err := cleanEmail(*up.Email)
		if err != nil {
			return Profile{}, err
		}
		email = e
	}
	if up.DisplayName != nil {
		n, err := cleanDisplayName(*up.DisplayName)
		if err != nil {
			return Profile{}, err
		}
		name = n
	}
	if up.Attributes != nil {
		a, err := cleanAttributes(*up.Attributes)
		if err != nil {
			return Profile{}, err
		}
		attrs = a
	}
	var p Profile
	if err := r.q.GetContext(ctx, &p, r.sql(sqlProfileUpdate), tenant, id, email, name, attrs); err != nil {
		return Profile{}, wrap("update profile", err)
	}
	return p, nil
}

// Delete removes a profile. A missing profile (or one of another tenant)
// matches sqladapter.ErrNotFound.
func (r *Profiles) Delete(ctx context.Context, tenant, id uuid.UUID) error {
	if err := requireTenant(tenant); err != nil {
		return err
	}
	res, err := r.q.ExecContext(ctx, r.sql(sqlProfileDelete), tenant, id)
	if err != nil {
		return wrap("delete profile", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return wrap("delete profile", err)
	}
	if n == 0 {
		return wrap("delete profile", sql.ErrNoRows)
	}
	return nil
}

// List returns one page of the tenant's profiles, oldest first (ordered by
// creation time, then id).
func (r *Profiles) List(ctx context.Context, tenant uuid.UUID, page Page) (ProfilePage, error) {
	if err := requireTenant(tenant); err != nil {
		return ProfilePage{}, err
	}
	items, next, err := selectPage[Profile](ctx, r.base, "list profiles", sqlProfileList, page, tenant)
	if err != nil {
		return ProfilePage{}, err
	}
	return ProfilePage{Items: items, NextCursor: next}, nil
}

// requireTenant rejects the nil UUID as a tenant.
func requireTenant(tenant uuid.UUID) error {
	if tenant == uuid.Nil {
		return invalid("tenant", "is required (got the nil UUID)")
	}
	return nil
}

// cleanEmail validates an email address and returns it trimmed.
func cleanEmail(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	switch {
	case s == "":
		return "", invalid("email", "is required")
	case !utf8.ValidString(s):
		return "", invalid("email", "is not valid UTF-8")
	case len(s) > MaxEmailLen:
		return "", invalid("email", "is longer than %d bytes", MaxEmailLen)
	}
	addr, err := mail.ParseAddress(s)
	if err != nil {
		// Some of net/mail's reasons end by quoting the input again.
		reason, _, _ := strings.Cut(strings.TrimPrefix(err.Error(), "mail: "), ", got ")
		return "", invalid("email", "%s is not an email address: %s", quote(s), reason)
	}
	if addr.Name != "" || addr.Address != s {
		return "", invalid("email", "%s must be a bare address like name@example.com, without a display name or brackets", quote(s))
	}
	at := strings.LastIndexByte(s, '@')
	local, domain := s[:at], s[at+1:]
	switch {
	case len(local) > 64:
		return "", invalid("email", "%s has a local part longer than 64 bytes", quote(s))
	case strings.IndexFunc(s, func(c rune) bool { return unicode.IsSpace(c) || unicode.IsControl(c) }) >= 0:
		return "", invalid("email", "%s contains a space or control character", quote(s))
	case strings.HasPrefix(domain, "["):
		return "", invalid("email", "%s has an address literal as its domain", quote(s))
	case !strings.Contains(strings.Trim(domain, "."), ".") || strings.Contains(domain, ".."):
		return "", invalid("email", "%s needs a domain like example.com", quote(s))
	}
	return s, nil
}

// cleanDisplayName validates a display name and returns it trimmed.
func cleanDisplayName(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	switch {
	case !utf8.ValidString(s):
		return "", invalid("display_name", "is not valid UTF-8")
	case strings.ContainsRune(s, 0):
		return "", invalid("display_name", "contains a NUL character")
	case utf8.RuneCountInString(s) > MaxDisplayNameLen:
		return "", invalid("display_name", "is longer than %d characters", MaxDisplayNameLen)
	}
	return s, nil
}

// cleanAttributes checks attributes are a JSON object, "{}" when empty.
func cleanAttributes(raw json.RawMessage) (json.RawMessage, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 {
		return json.RawMessage(`{}`), nil
	}
	if !json.Valid(trimmed) {
		return nil, invalid("attributes", "is not valid JSON")
	}
	if trimmed[0] != '{' {
		return nil, invalid("attributes", "must be a JSON object")
	}
	return trimmed, nil
}
