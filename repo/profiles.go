package repo

// Profiles stores user profiles.
type Profiles struct{ base }
