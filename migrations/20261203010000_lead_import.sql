-- CSV import of leads (issue 14): the external ids a file gave its
-- institutions, so importing the same file again updates what the first
-- run made instead of making it twice; and a case-insensitive name lookup,
-- by which rows without an external id find their institution.

CREATE TABLE lead_import_ids (
    external_id    text PRIMARY KEY CHECK (length(external_id) BETWEEN 1 AND 128),
    institution_id uuid NOT NULL REFERENCES lead_institutions (id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lead_import_ids_institution ON lead_import_ids (institution_id);

CREATE INDEX lead_institutions_lower_name ON lead_institutions (lower(name));
