-- Lead CRM domain (issue 14): tags, the customer a lead became, soft-deleted
-- contacts, tombstone versions, one primary detail per kind, and full-text
-- search in German and English.

-- Both stemmings in one vector: a German word matches by its German stem, an
-- English one by its English stem; the query is built the same way.
CREATE FUNCTION lead_tsvector(body text) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN to_tsvector('german'::regconfig, coalesce(body, ''))
        || to_tsvector('english'::regconfig, coalesce(body, ''));

ALTER TABLE lead_institutions
    ADD COLUMN tags         text[] NOT NULL DEFAULT '{}',
    ADD COLUMN customer_id  uuid UNIQUE REFERENCES customers (id) ON DELETE SET NULL,
    ADD COLUMN converted_at timestamptz,
    ADD COLUMN search       tsvector GENERATED ALWAYS AS (lead_tsvector(
        name || ' ' || coalesce(kind, '') || ' ' || coalesce(website, '') || ' '
        || coalesce(city, '') || ' ' || coalesce(country, '') || ' ' || coalesce(address, '')
    )) STORED;
CREATE INDEX lead_institutions_created ON lead_institutions (created_at DESC, id DESC);
CREATE INDEX lead_institutions_owner ON lead_institutions (owner_id, created_at DESC);
CREATE INDEX lead_institutions_tags ON lead_institutions USING gin (tags);
CREATE INDEX lead_institutions_search ON lead_institutions USING gin (search);

-- A deleted contact stays as a row so its notes keep their subject and
-- history; the service hides it.
ALTER TABLE lead_contacts
    ALTER COLUMN institution_id SET NOT NULL,
    ADD COLUMN deleted_at timestamptz,
    ADD COLUMN search     tsvector GENERATED ALWAYS AS (lead_tsvector(full_name || ' ' || coalesce(title, ''))) STORED;
CREATE INDEX lead_contacts_search ON lead_contacts USING gin (search);

CREATE UNIQUE INDEX lead_contact_details_one_primary
    ON lead_contact_details (contact_id, kind) WHERE is_primary;

-- Every version is searchable, old ones too: a note is found by what it once said.
ALTER TABLE lead_note_versions
    ADD COLUMN deleted boolean NOT NULL DEFAULT false,
    ADD COLUMN search  tsvector GENERATED ALWAYS AS (lead_tsvector(body)) STORED;
CREATE INDEX lead_note_versions_search ON lead_note_versions USING gin (search);
