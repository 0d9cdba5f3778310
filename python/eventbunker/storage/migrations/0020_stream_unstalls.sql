-- Scale-out mode: when a writer last acted on a stalled consumer of a stream
-- (scaleout/writer.py, StreamWriter.unstall). Every writer sees the stall at
-- about the same moment; without a turn each one asked for a leader step-down
-- within a second of the other, and the second undid the first: in the fault
-- test the consumer's leadership went back to a node that could not deliver,
-- twice, and the stream drained 33 s after the load stopped. One writer acts
-- per stall period, whichever takes the turn first.
CREATE TABLE IF NOT EXISTS stream_unstalls (
    stream    text PRIMARY KEY,
    acted_at  timestamptz NOT NULL
);
