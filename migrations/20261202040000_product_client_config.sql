-- What a client application of a product reads besides its license: how
-- often to heartbeat and how long to run offline (NULL: the edge
-- configuration's), the catalogue of feature names licenses of the
-- product may carry, and free-form settings of the vendor's (a JSON object).
ALTER TABLE products
    ADD COLUMN heartbeat_interval_secs integer CHECK (heartbeat_interval_secs BETWEEN 10 AND 86400),
    ADD COLUMN grace_period_secs integer CHECK (grace_period_secs BETWEEN 0 AND 7776000),
    ADD COLUMN features text[] NOT NULL DEFAULT '{}',
    ADD COLUMN client_settings jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(client_settings) = 'object');
