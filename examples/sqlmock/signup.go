// Package signup shows how to unit-test code built on poolsafe's
// repositories with go-sqlmock: no database, no Docker, milliseconds per
// test. It lives in examples/sqlmock.
//
// The code under test is [Service.Signup]: it creates a profile and records
// the domain of the user's website in one transaction (db.InTx), and turns
// a duplicate email — sqladapter.ErrConflict, whichever driver reported
// it — into its own [ErrEmailTaken]. signup_test.go tests the success path
// and the failure path, where the transaction must roll back.
//
// Run the tests:
//
//	go test ./examples/sqlmock
package signup

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/scrapersky/poolsafe/repo"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// ErrEmailTaken is returned by [Service.Signup] when the tenant has a
// profile with the email already (in any case).
var ErrEmailTaken = errors.New("email already registered")

// Service signs users up. Its db is a *sqladapter.DB: from
// driverconf.Open in production, over sqlmock in tests.
type Service struct {
	db *sqladapter.DB
}

// New returns a Service over db.
func New(db *sqladapter.DB) *Service { return &Service{db: db} }

// Request is a signup form.
type Request struct {
	Tenant  uuid.UUID
	Email   string
	Name    string
	Website string // any form repo.NormalizeDomain accepts, e.g. "https://www.Example.com/"
}

// Account is what a signup stored.
type Account struct {
	Profile repo.Profile
	Domain  repo.Domain
}

// Signup stores the profile and the website's domain together: either both
// are stored or neither is. A duplicate email is [ErrEmailTaken]; invalid
// input matches sqladapter.ErrInvalidInput.
func (s *Service) Signup(ctx context.Context, req Request) (Account, error) {
	var acc Account
	err := s.db.InTx(ctx, func(tx *sqladapter.Tx) error {
		// The same repositories work on the DB and inside a transaction.
		r := repo.New(tx)
		p, err := r.Profiles.Create(ctx, req.Tenant, repo.NewProfile{Email: req.Email, DisplayName: req.Name})
		if errors.Is(err, sqladapter.ErrConflict) {
			return fmt.Errorf("%w: %s", ErrEmailTaken, strings.TrimSpace(req.Email)) // rolls back
		}
		if err != nil {
			return err
		}
		d, err := r.Domains.Upsert(ctx, req.Tenant, req.Website)
		if err != nil {
			return err
		}
		acc = Account{Profile: p, Domain: d}
		return nil
	})
	if err != nil {
		return Account{}, fmt.Errorf("signup: %w", err)
	}
	return acc, nil
}
