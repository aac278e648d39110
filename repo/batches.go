package repo

// Batches groups jobs submitted together.
type Batches struct{ base }
