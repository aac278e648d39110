-- A batch's finish notice: who claimed the news that the batch finished
-- (repo.Batches.ClaimFinished and ClaimFinishNotices). The statement that
-- finishes a batch says so to its caller, but that answer can be lost with
-- the connection; the notice stays in the row until one claimer takes it.

-- +goose Up
ALTER TABLE batches
	ADD COLUMN finish_claimed_at timestamptz,
	ADD COLUMN finish_claimed_by text,
	ADD CONSTRAINT batches_finish_claim_check CHECK ((finish_claimed_at IS NULL) = (finish_claimed_by IS NULL)),
	ADD CONSTRAINT batches_finish_claim_finished_check CHECK (finish_claimed_at IS NULL OR finished_at IS NOT NULL);

-- Batches that finished before this migration were reported the old way
-- only: their notices count as claimed (by '', a key no caller can use),
-- so that the first sweep after the upgrade does not deliver the whole
-- history again.
UPDATE batches SET finish_claimed_at = finished_at, finish_claimed_by = '' WHERE finished_at IS NOT NULL;

-- Serves the sweep: finished batches whose notice nobody claimed.
CREATE INDEX batches_finish_unclaimed_idx ON batches (finished_at, id)
	WHERE finished_at IS NOT NULL AND finish_claimed_at IS NULL;
-- Serves a repeated sweep, which returns what its key holds.
CREATE INDEX batches_finish_claimed_by_idx ON batches (finish_claimed_by)
	WHERE finish_claimed_by IS NOT NULL;

-- +goose Down
DROP INDEX batches_finish_claimed_by_idx;
DROP INDEX batches_finish_unclaimed_idx;
ALTER TABLE batches
	DROP CONSTRAINT batches_finish_claim_finished_check,
	DROP CONSTRAINT batches_finish_claim_check,
	DROP COLUMN finish_claimed_by,
	DROP COLUMN finish_claimed_at;
