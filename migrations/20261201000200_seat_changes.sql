-- Seat churn (issue 11): client seat changes limited per license and
-- recorded, a client's and an admin's.

-- A client may free or move a seat at most seat_change_limit times in
-- seat_change_window_secs (0: only an admin may). Every existing license
-- gets the default: 3 per 30 days.
ALTER TABLE licenses
    ADD COLUMN seat_change_limit integer NOT NULL DEFAULT 3
        CHECK (seat_change_limit BETWEEN 0 AND 10000),
    ADD COLUMN seat_change_window_secs integer NOT NULL DEFAULT 2592000
        CHECK (seat_change_window_secs BETWEEN 3600 AND 31536000);

-- device_transfers records every seat change: transfers (to_device_id set)
-- and deactivations, and who asked. Rows so far were clients' transfers.
ALTER TABLE device_transfers
    ADD COLUMN kind text NOT NULL DEFAULT 'transfer' CHECK (kind IN ('transfer', 'deactivate')),
    ADD COLUMN initiated_by text NOT NULL DEFAULT 'client' CHECK (initiated_by IN ('client', 'admin'));
ALTER TABLE device_transfers
    ALTER COLUMN kind DROP DEFAULT,
    ALTER COLUMN initiated_by DROP DEFAULT,
    ADD CHECK (kind = 'transfer' OR to_device_id IS NULL);

-- Past deactivations, so that the limit counts from the first day.
INSERT INTO device_transfers (license_id, from_device_id, to_device_id, kind, initiated_by, at)
SELECT license_id, id, NULL, 'deactivate', deactivation_reason, deactivated_at
  FROM devices
 WHERE status = 'deactivated' AND deactivation_reason IN ('client', 'admin') AND deactivated_at IS NOT NULL;
