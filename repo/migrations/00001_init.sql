-- Schema for the scraping back office. Every table is tenant-scoped.
-- Migrations run with search_path set to the target schema (repo.Migrate).

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	NEW.updated_at := now();
	RETURN NEW;
END
$$;
-- +goose StatementEnd

CREATE TABLE profiles (
	id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	tenant_id    uuid NOT NULL,
	email        text NOT NULL CONSTRAINT profiles_email_check CHECK (email <> '' AND length(email) <= 254),
	display_name text NOT NULL DEFAULT '' CONSTRAINT profiles_display_name_check CHECK (length(display_name) <= 200),
	attributes   jsonb NOT NULL DEFAULT '{}'::jsonb CONSTRAINT profiles_attributes_check CHECK (jsonb_typeof(attributes) = 'object'),
	created_at   timestamptz NOT NULL DEFAULT now(),
	updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX profiles_tenant_email_key ON profiles (tenant_id, lower(email));
CREATE INDEX profiles_tenant_created_idx ON profiles (tenant_id, created_at, id);
CREATE TRIGGER profiles_touch BEFORE UPDATE ON profiles FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

CREATE TABLE domains (
	id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	tenant_id       uuid NOT NULL,
	domain          text NOT NULL CONSTRAINT domains_domain_check CHECK (length(domain) BETWEEN 1 AND 253 AND domain = lower(domain)),
	status          text NOT NULL DEFAULT 'pending' CONSTRAINT domains_status_check CHECK (status IN ('pending', 'active', 'blocked', 'error')),
	scan_count      integer NOT NULL DEFAULT 0 CONSTRAINT domains_scan_count_check CHECK (scan_count >= 0),
	last_scanned_at timestamptz,
	created_at      timestamptz NOT NULL DEFAULT now(),
	updated_at      timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT domains_tenant_domain_key UNIQUE (tenant_id, domain),
	CONSTRAINT domains_tenant_id_key UNIQUE (tenant_id, id)
);
CREATE INDEX domains_tenant_created_idx ON domains (tenant_id, created_at, id);
CREATE INDEX domains_tenant_status_created_idx ON domains (tenant_id, status, created_at, id);
CREATE TRIGGER domains_touch BEFORE UPDATE ON domains FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

CREATE TABLE batches (
	id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	tenant_id   uuid NOT NULL,
	name        text NOT NULL DEFAULT '' CONSTRAINT batches_name_check CHECK (length(name) <= 200),
	status      text NOT NULL DEFAULT 'pending' CONSTRAINT batches_status_check
		CHECK (status IN ('pending', 'running', 'completed', 'completed_with_errors', 'failed', 'cancelled')),
	total       integer NOT NULL CONSTRAINT batches_total_check CHECK (total >= 0),
	succeeded   integer NOT NULL DEFAULT 0 CONSTRAINT batches_succeeded_check CHECK (succeeded >= 0),
	failed      integer NOT NULL DEFAULT 0 CONSTRAINT batches_failed_check CHECK (failed >= 0),
	cancelled   integer NOT NULL DEFAULT 0 CONSTRAINT batches_cancelled_check CHECK (cancelled >= 0),
	finished_at timestamptz,
	created_at  timestamptz NOT NULL DEFAULT now(),
	updated_at  timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT batches_counts_check CHECK (succeeded + failed + cancelled <= total),
	CONSTRAINT batches_finished_check CHECK ((finished_at IS NOT NULL) = (status IN ('completed', 'completed_with_errors', 'failed', 'cancelled'))),
	CONSTRAINT batches_tenant_id_key UNIQUE (tenant_id, id)
);
CREATE INDEX batches_tenant_created_idx ON batches (tenant_id, created_at, id);
CREATE INDEX batches_unfinished_idx ON batches (tenant_id, created_at) WHERE finished_at IS NULL;
CREATE TRIGGER batches_touch BEFORE UPDATE ON batches FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

CREATE TABLE jobs (
	id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	tenant_id        uuid NOT NULL,
	batch_id         uuid,
	domain_id        uuid,
	kind             text NOT NULL CONSTRAINT jobs_kind_check CHECK (kind <> '' AND length(kind) <= 100),
	payload          jsonb NOT NULL DEFAULT '{}'::jsonb,
	state            text NOT NULL DEFAULT 'queued' CONSTRAINT jobs_state_check
		CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
	priority         integer NOT NULL DEFAULT 0,
	run_at           timestamptz NOT NULL DEFAULT now(),
	attempts         integer NOT NULL DEFAULT 0 CONSTRAINT jobs_attempts_check CHECK (attempts >= 0),
	max_attempts     integer NOT NULL DEFAULT 3 CONSTRAINT jobs_max_attempts_check CHECK (max_attempts >= 1),
	locked_by        text,
	lease_expires_at timestamptz,
	progress         double precision NOT NULL DEFAULT 0 CONSTRAINT jobs_progress_check CHECK (progress >= 0 AND progress <= 1),
	result           jsonb,
	last_error       text,
	finished_at      timestamptz,
	created_at       timestamptz NOT NULL DEFAULT now(),
	updated_at       timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT jobs_lease_check CHECK ((state = 'running') = (locked_by IS NOT NULL AND lease_expires_at IS NOT NULL)),
	CONSTRAINT jobs_finished_check CHECK ((finished_at IS NOT NULL) = (state IN ('succeeded', 'failed', 'cancelled'))),
	CONSTRAINT jobs_batch_fkey FOREIGN KEY (tenant_id, batch_id) REFERENCES batches (tenant_id, id) ON DELETE CASCADE,
	CONSTRAINT jobs_domain_fkey FOREIGN KEY (tenant_id, domain_id) REFERENCES domains (tenant_id, id)
);
-- Serves Claim: runnable jobs in priority, then run_at, order.
CREATE INDEX jobs_runnable_idx ON jobs (priority DESC, run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_tenant_runnable_idx ON jobs (tenant_id, priority DESC, run_at, id) WHERE state = 'queued';
-- Serves RescueExpired.
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_batch_state_idx ON jobs (batch_id, state) WHERE batch_id IS NOT NULL;
CREATE INDEX jobs_tenant_created_idx ON jobs (tenant_id, created_at, id);
CREATE TRIGGER jobs_touch BEFORE UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- +goose Down
DROP TABLE jobs;
DROP TABLE batches;
DROP TABLE domains;
DROP TABLE profiles;
DROP FUNCTION touch_updated_at();
