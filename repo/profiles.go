package repo

import (
	"context"
	"database/sql"
	"encoding/json"
	"time"

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
	return getRow[Profile](ctx, r.base, "create profile", sqlProfileInsert, tenant, email, name, attrs)
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
	return getRow[Profile](ctx, r.base, "update profile", sqlProfileUpdate, tenant, id, email, name, attrs)
}

// Delete removes a profile. A missing profile (or one of another tenant)
// matches sqladapter.ErrNotFound.
func (r *Profiles) Delete(ctx context.Context, tenant, id uuid.UUID) error {
	if err := requireTenant(tenant); err != nil {
		return err
	}
	n, err := exec(ctx, r.base, "delete profile", sqlProfileDelete, tenant, id)
	if err == nil && n == 0 {
		err = wrap("delete profile", sql.ErrNoRows)
	}
	return err
}

// List returns one page of the tenant's profiles, oldest first (ordered by
// creation time, then id).
func (r *Profiles) List(ctx context.Context, tenant uuid.UUID, page Page) (PageOf[Profile], error) {
	if err := requireTenant(tenant); err != nil {
		return PageOf[Profile]{}, err
	}
	return selectPage[Profile](ctx, r.base, "list profiles", sqlProfileList, page, tenant)
}
