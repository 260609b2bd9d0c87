-- The panel's license list (issue 12): keyset pages in each of its sorts,
-- and the key prefix filter. Plans and timings at a million licenses are in
-- ARCHITECTURE.md, "Measured".

-- Newest (and oldest) first: `(created_at, id) < cursor`, read backwards
-- (or forwards). It replaces `licenses_created` (created_at DESC, id),
-- whose mixed directions a row comparison cannot walk.
DROP INDEX licenses_created;
CREATE INDEX licenses_created_id ON licenses (created_at, id);
-- The two filters most often used alone, in that order: a status or a
-- product walks its own licenses newest first instead of every license
-- (a rare status of one product took 480 ms through (product_id, status)).
CREATE INDEX licenses_status_created ON licenses (status, created_at, id);
CREATE INDEX licenses_product_created ON licenses (product_id, created_at, id);
DROP INDEX licenses_product;
-- Valid until, earliest first, perpetual licenses last; also what
-- "expiring within N days" is a range of.
CREATE INDEX licenses_valid_until ON licenses ((coalesce(valid_until, 'infinity'::timestamptz)), id);
-- A key's first characters (`LIKE 'K7Q%'`), whatever the database's collation.
CREATE INDEX licenses_key_prefix_pattern ON licenses (key_prefix text_pattern_ops);
DROP INDEX licenses_key_prefix;
-- Status, kind and product are low-cardinality and correlated (trial
-- licenses of one product, revoked ones of another): without their joint
-- frequencies the planner multiplies, expects a filter with no match to
-- find a page quickly, and walks a sort's index through every license
-- (7.2 s at a million; 220 ms with these).
CREATE STATISTICS licenses_status_kind_product (mcv) ON status, kind, product_id FROM licenses;
