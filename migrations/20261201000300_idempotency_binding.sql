-- Idempotency keys bound to their request (issue 11).

-- A key replays only the request it came with: the same call, machine and
-- (for a transfer) source device. Rows stored before are bound to what
-- their answer names; those that cannot be bound are dropped (a retry with
-- such a key is then decided afresh, under every rule).
ALTER TABLE idempotent_requests
    ADD COLUMN kind text CHECK (kind IN ('activate', 'transfer')),
    ADD COLUMN fingerprint_hash bytea CHECK (length(fingerprint_hash) = 32),
    ADD COLUMN from_device_id uuid;
UPDATE idempotent_requests r
   SET kind = CASE WHEN r.response->>'outcome' = 'transferred' THEN 'transfer' ELSE 'activate' END,
       fingerprint_hash = d.fingerprint_hash,
       from_device_id = CASE WHEN r.response->>'outcome' = 'transferred'
                             THEN (SELECT t.from_device_id FROM device_transfers t
                                    WHERE t.to_device_id = d.id AND t.kind = 'transfer' LIMIT 1) END
  FROM devices d
 WHERE d.id = (r.response->>'device_id')::uuid;
DELETE FROM idempotent_requests
 WHERE kind IS NULL OR fingerprint_hash IS NULL OR (kind = 'transfer' AND from_device_id IS NULL);
ALTER TABLE idempotent_requests
    ALTER COLUMN kind SET NOT NULL,
    ALTER COLUMN fingerprint_hash SET NOT NULL,
    ADD CHECK ((kind = 'transfer') = (from_device_id IS NOT NULL));

