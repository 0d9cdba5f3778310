//! [`Enricher`]: the configuration and caches of enrichment, built once per
//! worker and shared by every request (it is `Send + Sync`).
//!
//! Per event it answers three questions, each cheap on a cache hit:
//! which address the request came from ([`Enricher::client_ip`]), where
//! that address is ([`Enricher::geo`]), and what the user agent is
//! ([`Enricher::user_agent`]); plus what to store as `ip`
//! ([`Enricher::stored_ip`]: anonymised after the lookup when configured).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use super::cache::CacheStats;
use super::client_ip::TrustedProxies;
use super::geo::{self, Geo, GeoDb};
use super::user_agent::{UserAgent, UserAgentCache, UserAgentParser};
use crate::ingest::ip;

/// The default number of cached user agents.
pub const DEFAULT_UA_CACHE_CAPACITY: usize = 10_000;
/// The default number of cached addresses.
pub const DEFAULT_GEO_CACHE_CAPACITY: usize = geo::DEFAULT_CACHE_CAPACITY;

/// How to build an [`Enricher`].
#[derive(Clone, Debug)]
pub struct EnricherConfig {
    /// A MaxMind City database (`.mmdb`); `None`: the `geo_*` columns are
    /// null.
    pub geoip_db: Option<PathBuf>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
    /// Store `ip` with its host part zeroed ([`ip::anonymize`]).
    pub anonymize_ip: bool,
    /// Most user agents cached (0: none).
    pub ua_cache_capacity: usize,
    /// Most addresses cached (0: none).
    pub geo_cache_capacity: usize,
    /// The user-agent rules (uap-core's, embedded, by default).
    pub ua_parser: &'static UserAgentParser,
}

impl Default for EnricherConfig {
    fn default() -> Self {
        EnricherConfig {
            geoip_db: None,
            trusted_proxies: TrustedProxies::none(),
            anonymize_ip: false,
            ua_cache_capacity: DEFAULT_UA_CACHE_CAPACITY,
            geo_cache_capacity: DEFAULT_GEO_CACHE_CAPACITY,
            ua_parser: UserAgentParser::global(),
        }
    }
}

/// Enrichment settings and caches.
#[derive(Debug)]
pub struct Enricher {
    geo: Option<GeoDb>,
    geoip_db: Option<PathBuf>,
    trusted_proxies: TrustedProxies,
    anonymize_ip: bool,
    user_agents: UserAgentCache,
}

static DEFAULT: LazyLock<Enricher> = LazyLock::new(|| {
    Enricher::new(EnricherConfig::default()).expect("the default enricher needs no files")
});

impl Enricher {
    /// Open the GeoIP database, if any; the error says what is wrong with it.
    pub fn new(config: EnricherConfig) -> Result<Self, String> {
        let geo = match &config.geoip_db {
            Some(path) => Some(GeoDb::open(path, config.geo_cache_capacity)?),
            None => None,
        };
        Ok(Enricher {
            geo,
            geoip_db: config.geoip_db,
            trusted_proxies: config.trusted_proxies,
            anonymize_ip: config.anonymize_ip,
            user_agents: UserAgentCache::with_parser(config.ua_parser, config.ua_cache_capacity),
        })
    }

    /// The process-wide enricher with the default configuration: no GeoIP
    /// database, no trusted proxy, addresses kept whole.
    pub fn shared_default() -> &'static Enricher {
        &DEFAULT
    }

    /// The client address: the peer's, or from `X-Forwarded-For` when the
    /// peer is a trusted proxy (see `client_ip`). An unparsable peer
    /// address is ignored.
    pub fn client_ip(&self, peer: Option<&str>, forwarded_for: Option<&str>) -> Option<IpAddr> {
        let peer = peer.and_then(ip::parse);
        self.trusted_proxies.client_ip(peer, forwarded_for)
    }

    /// Where `ip` is, from the cache or the database; `None` without a
    /// database, for addresses that are not public, and for unknown ones.
    #[inline]
    pub fn geo(&self, ip: IpAddr) -> Option<Arc<Geo>> {
        self.geo.as_ref()?.get(ip)
    }

    /// The parsed user agent, from the cache or parsed (uap-core; with a
    /// cache capacity of 0, parsed every time, without hashing or locks).
    #[inline]
    pub fn user_agent(&self, ua: &str) -> Arc<UserAgent> {
        self.user_agents.get(ua)
    }

    /// The address stored in the `ip` column (anonymised or not).
    #[inline]
    pub fn stored_ip(&self, ip: IpAddr) -> IpAddr {
        if self.anonymize_ip {
            ip::anonymize(ip)
        } else {
            ip
        }
    }

    pub fn anonymize_ip(&self) -> bool {
        self.anonymize_ip
    }

    pub fn geoip_db(&self) -> Option<&Path> {
        self.geoip_db.as_deref()
    }

    /// The GeoIP database's type (`GeoLite2-City`...), if one is open.
    pub fn geoip_database_type(&self) -> Option<&str> {
        self.geo.as_ref().map(GeoDb::database_type)
    }

    /// When the GeoIP database was built (seconds since the epoch).
    pub fn geoip_build_epoch(&self) -> Option<u64> {
        self.geo.as_ref().map(GeoDb::build_epoch)
    }

    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.trusted_proxies
    }

    /// User-agent cache statistics.
    pub fn ua_cache_stats(&self) -> CacheStats {
        self.user_agents.stats()
    }

    /// GeoIP cache statistics (all zero without a database).
    pub fn geo_cache_stats(&self) -> CacheStats {
        self.geo
            .as_ref()
            .map(GeoDb::cache_stats)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enricher_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Enricher>();
    }

    #[test]
    fn defaults() {
        let e = Enricher::shared_default();
        assert_eq!(e.geoip_db(), None);
        assert!(e.trusted_proxies().is_empty());
        assert!(!e.anonymize_ip());
        assert_eq!(e.geo("81.2.69.142".parse().unwrap()), None);
        assert_eq!(
            e.client_ip(Some("::ffff:127.0.0.1"), Some("81.2.69.142")),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(e.client_ip(Some("garbage"), None), None);
        let ua = e
            .user_agent("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)");
        assert!(ua.is_bot);
    }

    #[test]
    fn a_missing_database_is_an_error() {
        let e = Enricher::new(EnricherConfig {
            geoip_db: Some("/nonexistent.mmdb".into()),
            ..EnricherConfig::default()
        })
        .unwrap_err();
        assert!(e.contains("/nonexistent.mmdb"), "{e}");
    }

    /// Requirement: under a flood of distinct values, the caches stay within
    /// their capacity. (The user-agent parser here has no rules, so that
    /// the test measures the caches, not uap-core.)
    #[test]
    fn caches_stay_bounded_under_a_flood_of_distinct_values() {
        static EMPTY: LazyLock<UserAgentParser> = LazyLock::new(|| {
            UserAgentParser::from_yaml(
                "user_agent_parsers: []\nos_parsers: []\ndevice_parsers: []\n",
            )
            .unwrap()
        });
        let db = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/testdata/geoip/GeoIP2-City-Test.mmdb");
        assert!(
            db.exists(),
            "{} missing: put the shared test data (../shared/testdata) beside the repository",
            db.display()
        );
        let geoip_db = Some(db);
        let e = Enricher::new(EnricherConfig {
            geoip_db,
            ua_cache_capacity: 1000,
            geo_cache_capacity: 2000,
            ua_parser: &EMPTY,
            ..EnricherConfig::default()
        })
        .unwrap();
        let mut ua = String::new();
        for i in 0..1_000_000u32 {
            ua.clear();
            ua.push_str("Mozilla/5.0 flood ");
            ua.push_str(&i.to_string());
            e.user_agent(&ua);
            // Distinct public IPv4 and IPv6 addresses, alternately.
            let addr = if i % 2 == 0 {
                IpAddr::V4((0x5100_0000 + i).into())
            } else {
                IpAddr::V6((0x2a02_0000_u128 << 96 | u128::from(i)).into())
            };
            e.geo(addr);
            if i % 100_000 == 0 {
                assert!(e.ua_cache_stats().entries <= 1000);
                assert!(e.geo_cache_stats().entries <= 2000);
            }
        }
        let ua = e.ua_cache_stats();
        assert!(ua.entries <= 1000 && ua.misses == 1_000_000, "{ua:?}");
        assert!(ua.entries > 900, "the cache is used: {ua:?}");
        if e.geoip_db().is_some() {
            let geo = e.geo_cache_stats();
            assert!(geo.entries <= 2000 && geo.misses == 1_000_000, "{geo:?}");
        }
    }
}
