-- Imports of customers and licenses (issue 15): the external id each line
-- gave its row in the system the file comes from, so importing the same
-- file again finds what the first run made instead of making it twice.

CREATE TABLE customer_import_ids (
    external_id text PRIMARY KEY CHECK (length(external_id) BETWEEN 1 AND 128),
    customer_id uuid NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customer_import_ids_customer ON customer_import_ids (customer_id);

CREATE TABLE license_import_ids (
    external_id text PRIMARY KEY CHECK (length(external_id) BETWEEN 1 AND 128),
    license_id  uuid NOT NULL REFERENCES licenses (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX license_import_ids_license ON license_import_ids (license_id);
