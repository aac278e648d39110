package repo

// Domains stores the domains a tenant scrapes.
type Domains struct{ base }
