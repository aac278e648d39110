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

// PageOf is one page of a list — [Profiles.List], [Domains.List],
// [Jobs.List] and [Batches.List] — in the list's order (creation time,
// then id).
type PageOf[T any] struct {
	// Items are the page's items: at most Page.Limit, never nil.
	Items []T
	// NextCursor continues the list after Items (as Page.Cursor). It is ""
	// exactly when no item followed Items when the page was read — so a
	// full page that happens to be the last has none — whether the page
	// was asked for by cursor or by offset.
	NextCursor string
}

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

// args validates p and returns the limit, the offset and the cursor
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

// keyed is an item of a list ordered by (created_at, id).
type keyed interface{ pageKey() cursor }

func (p Profile) pageKey() cursor { return cursor{createdAt: p.CreatedAt, id: p.ID} }
func (d Domain) pageKey() cursor  { return cursor{createdAt: d.CreatedAt, id: d.ID} }
func (j Job) pageKey() cursor     { return cursor{createdAt: j.CreatedAt, id: j.ID} }
func (b Batch) pageKey() cursor   { return cursor{createdAt: b.CreatedAt, id: b.ID} }

// selectPage runs a list statement whose last four parameters are the page
// position (created_at, id), limit and offset, after args. It asks for one
// item more than the page holds, to know whether another page follows.
func selectPage[T keyed](ctx context.Context, b base, op, stmt string, page Page, args ...any) (PageOf[T], error) {
	limit, offset, after, err := page.args()
	if err != nil {
		return PageOf[T]{}, err
	}
	items := []T{}
	args = append(args, after.createdAt, after.id, limit+1, offset)
	if err := b.q.SelectContext(ctx, &items, b.sql(stmt), args...); err != nil {
		return PageOf[T]{}, wrap(op, err)
	}
	p := PageOf[T]{Items: items}
	if len(items) > limit {
		p.Items = items[:limit]
		p.NextCursor = items[limit-1].pageKey().encode()
	}
	return p, nil
}
