package repo

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Page asks for one page of a list. Use either Cursor (keyset pagination,
// stable under inserts) or Offset (the original API's limit/offset), not
// both.
type Page struct {
	// Limit is the most items to return: 1 to MaxLimit. Defaults to 50.
	Limit int
	// Cursor is NextCursor from the previous page; "" for the first page.
	Cursor string
	// Offset skips that many items (compatibility with limit/offset APIs).
	Offset int
}

// Page limits. MaxLimit also bounds [Batches.ClaimFinishNotices].
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

// cursor is the position after the last item of a page: items are ordered
// by (created_at, id).
type cursor struct {
	createdAt time.Time
	id        uuid.UUID
}

func (c cursor) encode() string {
	raw := c.createdAt.UTC().Format(time.RFC3339Nano) + "|" + c.id.String()
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func decodeCursor(s string) (cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, fmt.Errorf("%w: not base64", ErrInvalidCursor)
	}
	ts, id, ok := strings.Cut(string(raw), "|")
	if !ok {
		return cursor{}, fmt.Errorf("%w: malformed", ErrInvalidCursor)
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return cursor{}, fmt.Errorf("%w: bad time", ErrInvalidCursor)
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return cursor{}, fmt.Errorf("%w: bad id", ErrInvalidCursor)
	}
	return cursor{createdAt: t, id: u}, nil
}

// pageArgs validates p and returns the limit, the offset and the cursor
// position (after a zero time and nil id for the first page).
func (p Page) args() (limit, offset int, after cursor, err error) {
	limit = p.Limit
	switch {
	case limit == 0:
		limit = DefaultLimit
	case limit < 0 || limit > MaxLimit:
		return 0, 0, cursor{}, invalid("limit", "must be between 1 and %d, got %d", MaxLimit, p.Limit)
	}
	if p.Offset < 0 {
		return 0, 0, cursor{}, invalid("offset", "must not be negative, got %d", p.Offset)
	}
	if p.Cursor != "" && p.Offset != 0 {
		return 0, 0, cursor{}, invalid("offset", "cannot be combined with a cursor")
	}
	if p.Cursor != "" {
		after, err = decodeCursor(p.Cursor)
		if err != nil {
			return 0, 0, cursor{}, &ValidationError{Field: "cursor", Problem: err.Error(), Err: err}
		}
	} else {
		after = cursor{createdAt: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)}
	}
	return limit, p.Offset, after, nil
}

// nextCursor returns the cursor after the last item when the page is full.
func nextCursor(n, limit int, last cursor) string {
	if n < limit {
		return ""
	}
	return last.encode()
}

// keyed is an item of a list ordered by (created_at, id).
type keyed interface{ pageKey() cursor }

func (p Profile) pageKey() cursor { return cursor{createdAt: p.CreatedAt, id: p.ID} }
func (d Domain) pageKey() cursor  { return cursor{createdAt: d.CreatedAt, id: d.ID} }
func (j Job) pageKey() cursor     { return cursor{createdAt: j.CreatedAt, id: j.ID} }
func (b Batch) pageKey() cursor   { return cursor{createdAt: b.CreatedAt, id: b.ID} }

// selectPage runs a list statement whose last four parameters are the page
// position (created_at, id), limit and offset, after args, and returns the
// items and the cursor of the next page ("" after the last).
func selectPage[T keyed](ctx context.Context, b base, op, stmt string, page Page, args ...any) ([]T, string, error) {
	limit, offset, after, err := page.args()
	if err != nil {
		return nil, "", err
	}
	items := []T{}
	args = append(args, after.createdAt, after.id, limit, offset)
	if err := b.q.SelectContext(ctx, &items, b.sql(stmt), args...); err != nil {
		return nil, "", wrap(op, err)
	}
	next := ""
	if n := len(items); n > 0 {
		next = nextCursor(n, limit, items[n-1].pageKey())
	}
	return items, next, nil
}
