package repo

// Jobs is the job queue.
type Jobs struct{ base }
