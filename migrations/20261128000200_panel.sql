-- Admin panel: a TOTP code is accepted once (RFC 6238 5.2), so the last
-- accepted time step is kept per admin.
ALTER TABLE admin_users ADD COLUMN totp_last_step bigint;
