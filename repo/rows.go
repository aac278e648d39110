package repo

import (
	"encoding/json"
	"fmt"
	"reflect"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/jmoiron/sqlx/reflectx"
)

// transitionRow is a job with its batch as the job-to-final statements
// return them (see sqlJobTallyResult).
type transitionRow struct {
	Job
	Batch        jsonRow[Batch] `db:"batch"`
	JustFinished bool           `db:"b_just_finished"`
}

func (r transitionRow) transition() Transition {
	return Transition{Job: r.Job, Batch: r.Batch.v, BatchFinished: r.JustFinished}
}

// jsonRow scans a row that a statement returns as one JSON object —
// to_jsonb of a row that may be missing — into a *T (nil for NULL), by the
// db tags sqlx scans columns with: each key fills the field its column
// would. Keys without a field are ignored. Times come back in UTC, as the
// adapter scans them.
type jsonRow[T any] struct{ v *T }

var jsonRowMapper = reflectx.NewMapperFunc("db", sqlx.NameMapper)

func (r *jsonRow[T]) Scan(src any) error {
	var raw []byte
	switch s := src.(type) {
	case nil:
		r.v = nil
		return nil
	case []byte:
		raw = s
	case string:
		raw = []byte(s)
	default:
		return fmt.Errorf("repo: cannot scan %T as a JSON row", src)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return fmt.Errorf("repo: JSON row: %w", err)
	}
	v := new(T)
	rv := reflect.ValueOf(v).Elem()
	fields := jsonRowMapper.TypeMap(rv.Type()).Names
	for key, val := range obj {
		fi, ok := fields[key]
		if !ok {
			continue
		}
		dst := reflectx.FieldByIndexes(rv, fi.Index).Addr().Interface()
		if err := json.Unmarshal(val, dst); err != nil {
			return fmt.Errorf("repo: JSON row: %s: %w", key, err)
		}
		switch t := dst.(type) {
		case *time.Time:
			*t = t.UTC()
		case **time.Time:
			if *t != nil {
				u := (*t).UTC()
				*t = &u
			}
		}
	}
	r.v = v
	return nil
}
