-- Scale-out mode: which JetStream messages have been stored, claimed in the
-- same transaction as their rows. A message redelivered after its writer
-- committed (and died before acknowledging it) finds its sequence claimed
-- and is only acknowledged, never stored twice. Writers prune the claims
-- below the stream's first sequence: those messages are acknowledged and
-- gone from the work-queue stream, so they can never come back.
CREATE TABLE IF NOT EXISTS stream_claims (
    stream      text NOT NULL,
    seq         bigint NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, seq)
);
