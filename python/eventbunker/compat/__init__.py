"""Drop-in endpoints for the Segment, PostHog, Mixpanel and Amplitude SDKs.

Each SDK module says where its key is and how it wants to be answered; the
mapping of its payload runs in Rust (rust/src/compat/) and the request is
made durable by the ingest endpoint's own ``accept`` (one path for all).
"""
