-- Signed answers (issue 18): until when control's certificate of each
-- edge's answer key holds, set each time the edge asks over the link. The
-- panel shows it; past it, clients requiring signatures pass the edge over.

ALTER TABLE edges ADD COLUMN answers_certified_until timestamptz;
