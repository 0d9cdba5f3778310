-- Scale-out mode: which JetStream messages have been stored, claimed by the
-- message's Nats-Msg-Id in the same transaction as their rows (issue 13).
-- Claims by stream sequence (0015) did not catch another stream message of
-- the same publish (the sink retries a publish under one Nats-Msg-Id), and
-- they were pruned below a first sequence any replica could report
-- (scaleout/writer.py): the fault test's probe was stored twice. A message
-- id is the same for every copy of a publish and for a redelivery, so one
-- claim covers both: the other copy, or the redelivery, is only
-- acknowledged. A message without a Nats-Msg-Id (not published by an ingest
-- node) is claimed by its sequence.
--   message_key: 'id:' || Nats-Msg-Id, or 'seq:' || stream sequence
--   seq: the stream sequence of the copy stored
-- Writers prune a claim only when both its sequence is below the stream's
-- first sequence (its message acknowledged and gone) and it is older than
-- the event-id idempotency window: a wrong first sequence can only ever
-- remove claims that old, and a copy or redelivery coming within the
-- window always finds its claim.
CREATE TABLE IF NOT EXISTS stream_message_claims (
    stream       text NOT NULL,
    message_key  text NOT NULL,
    seq          bigint NOT NULL,
    claimed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, message_key)
);
CREATE INDEX IF NOT EXISTS stream_message_claims_claimed_at
    ON stream_message_claims USING brin (claimed_at);

-- The sequence claims are replaced: a writer of an older version still
-- running fails its batches here (it stores nothing) instead of claiming
-- where the new writers do not look. Stop the old writers before the new
-- ones start (a stopped writer has acknowledged all it committed).
DROP TABLE IF EXISTS stream_claims;
