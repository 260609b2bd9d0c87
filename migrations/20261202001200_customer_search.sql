-- The panel's customer list and autocomplete (issue 12).

-- Search matches a part of the name, the e-mail address or the company, any
-- case: one trigram index per column, combined by a BitmapOr.
CREATE INDEX customers_email_trgm ON customers USING gin (email gin_trgm_ops);
CREATE INDEX customers_company_trgm ON customers USING gin (company gin_trgm_ops);
-- Keyset pages, newest first: `(created_at, id) < cursor`.
CREATE INDEX customers_created ON customers (created_at DESC, id DESC);
