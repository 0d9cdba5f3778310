//! Enrichment of events on the ingest path: the columns derived from the
//! request (user agent, ...).

pub mod user_agent;

pub use user_agent::{
    DeviceType, RawDevice, RawOs, RawUserAgent, UserAgent, UserAgentCache, UserAgentParser,
};
