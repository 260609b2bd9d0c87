-- Machine ids in device digests (issue 11).

-- Fingerprints may carry a machine id; its 32-bit hash is appended to the
-- digest (24 -> 28 bytes, snapshot format 2). Devices stored before
-- reported none, which a digest says with zeros.
ALTER TABLE devices DROP CONSTRAINT devices_digest_check;
UPDATE devices SET digest = digest || '\x00000000'::bytea WHERE length(digest) = 24;
ALTER TABLE devices ADD CONSTRAINT devices_digest_check CHECK (length(digest) = 28);
