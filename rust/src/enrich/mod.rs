//! Enrichment of events on the ingest path: the columns derived from the
//! request. In the order of the data path:
//! - [`client_ip`]: which address sent the request (peer, or
//!   `X-Forwarded-For` from trusted proxies);
//! - [`geo`]: where that address is (MaxMind database, cached by address);
//! - [`user_agent`]: browser, OS, device and bot detection (uap-core,
//!   cached by user agent);
//! - [`enricher`]: the per-worker configuration and caches that tie them
//!   together, used by `ingest::event`.

pub mod cache;
pub mod client_ip;
pub mod enricher;
pub mod geo;
pub mod user_agent;

pub use client_ip::TrustedProxies;
pub use enricher::{Enricher, EnricherConfig};
pub use geo::{Geo, GeoDb};
pub use user_agent::{
    DeviceType, RawDevice, RawOs, RawUserAgent, RawVersioned, UserAgent, UserAgentCache,
    UserAgentParser,
};
