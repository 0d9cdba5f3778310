//! GeoIP: the `geo_*` columns from a MaxMind database (`.mmdb`, GeoIP2 or
//! GeoLite2 City; a Country database gives only `geo_country` and
//! `geo_timezone`-less rows), memory-mapped.
//!
//! The columns, from the City record of the client address:
//! - `geo_country`: `country.iso_code` (ISO 3166-1 alpha-2, `GB`);
//! - `geo_region`: the first (largest) subdivision's English name
//!   (`England`, `California`), or its ISO 3166-2 code (`ENG`) when it has
//!   no English name. Names, because a region is for reading and grouping,
//!   and a subdivision code means little without its country;
//! - `geo_city`: the city's English name (`London`);
//! - `geo_latitude`, `geo_longitude`: `location.latitude` / `longitude`;
//! - `geo_timezone`: `location.time_zone` (IANA, `Europe/London`).
//!
//! Addresses that are not public (private, loopback, link-local, shared,
//! documentation, benchmarking, multicast, reserved: see [`is_public`])
//! resolve to nothing without a lookup. Lookups go through a bounded cache
//! keyed by address (`enrich::cache`), which also remembers addresses the
//! database does not know. Many addresses share one database record (a
//! city), so decoded records are cached by their offset in the database and
//! shared: an address costs its cache slot (~80 bytes), not a copy of its
//! place (100,000 addresses: ~10 MB), and a new address in a known city
//! costs only the tree walk.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use maxminddb::{Mmap, Reader};
use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;

use super::cache::{Cache, CacheStats};

/// The default number of cached addresses.
pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;

/// The geo columns of one address.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Geo {
    pub country: Option<String>,
    pub region: Option<String>,
    pub city: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub timezone: Option<String>,
}

impl Geo {
    fn is_empty(&self) -> bool {
        *self == Geo::default()
    }
}

/// Whether `ip` is a public unicast address worth a lookup. Not public:
/// IPv4 `0.0.0.0/8`, private (`10/8`, `172.16/12`, `192.168/16`), shared
/// (`100.64/10`), loopback, link-local (`169.254/16`), IETF protocol
/// (`192.0.0/24`), documentation (`192.0.2/24`, `198.51.100/24`,
/// `203.0.113/24`), 6to4 relay (`192.88.99/24`), benchmarking
/// (`198.18/15`), multicast and reserved (`224/3`, broadcast included);
/// IPv6 `::`, `::1`, the deprecated IPv4-compatible `::/96`, NAT64
/// local-use (`64:ff9b:1::/48`), discard (`100::/64`), benchmarking
/// (`2001:2::/48`), ORCHID (`2001:10::/28`, `2001:20::/28`), documentation
/// (`2001:db8::/32`, `3fff::/20`), unique local (`fc00::/7`), link-local
/// (`fe80::/10`), site-local (`fec0::/10`), multicast (`ff00::/8`). An
/// IPv4-mapped IPv6 address is judged as IPv4.
pub fn is_public(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let a = u32::from(v4);
            let in_net = |net: u32, len: u32| a >> (32 - len) == net >> (32 - len);
            !(in_net(0x0000_0000, 8)
                || in_net(0x0a00_0000, 8)
                || in_net(0x6440_0000, 10)
                || in_net(0x7f00_0000, 8)
                || in_net(0xa9fe_0000, 16)
                || in_net(0xac10_0000, 12)
                || in_net(0xc000_0000, 24)
                || in_net(0xc000_0200, 24)
                || in_net(0xc058_6300, 24)
                || in_net(0xc0a8_0000, 16)
                || in_net(0xc612_0000, 15)
                || in_net(0xc633_6400, 24)
                || in_net(0xcb00_7100, 24)
                || in_net(0xe000_0000, 3))
        }
        IpAddr::V6(v6) => {
            let a = u128::from(v6);
            let in_net = |net: u128, len: u32| a >> (128 - len) == net >> (128 - len);
            !(in_net(0, 96)
                || in_net(0x0064_ff9b_0001 << 80, 48)
                || in_net(0x0100 << 112, 64)
                || in_net(0x2001_0002 << 96 >> 16 << 16, 48)
                || in_net(0x2001_0010 << 96, 28)
                || in_net(0x2001_0020 << 96, 28)
                || in_net(0x2001_0db8 << 96, 32)
                || in_net(0x3fff << 112, 20)
                || in_net(0xfc00 << 112, 7)
                || in_net(0xfe80 << 112, 10)
                || in_net(0xfec0 << 112, 10)
                || in_net(0xff00 << 112, 8))
        }
    }
}

/// An open GeoIP database with its caches.
pub struct GeoDb {
    reader: Reader<Mmap>,
    by_address: Cache<IpAddr, Option<Arc<Geo>>>,
    /// Decoded records by data offset (a quarter as many as addresses).
    by_record: Cache<usize, Option<Arc<Geo>>>,
}

impl fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoDb")
            .field("database_type", &self.database_type())
            .field("cache", &self.by_address.stats())
            .finish()
    }
}

impl GeoDb {
    /// Open (memory-map) the database at `path`, with a cache of at most
    /// `cache_capacity` addresses (and a quarter as many records; 0: no
    /// caching). Errors name the file and say why: missing,
    /// unreadable, not a MaxMind database, or a database without locations
    /// (ASN, ISP, anonymous IP...).
    pub fn open(path: &Path, cache_capacity: usize) -> Result<Self, String> {
        let shown = path.display();
        // SAFETY: the file must not be modified in place while mapped (that
        // could fault or read torn records). MaxMind's `geoipupdate`, like
        // any careful updater, writes a new file and renames it over the old
        // one: the mapping keeps the old inode, and a restart picks up the
        // new database.
        let reader = unsafe { Reader::open_mmap(path) }
            .map_err(|e| format!("cannot open GeoIP database {shown}: {e}"))?;
        let kind = &reader.metadata().database_type;
        if !(kind.contains("City") || kind.contains("Country") || kind.contains("Enterprise")) {
            return Err(format!(
                "GeoIP database {shown} is a {kind:?} database; a City (or Country) database \
                 is needed, such as GeoLite2-City.mmdb"
            ));
        }
        Ok(GeoDb {
            reader,
            by_address: Cache::new(cache_capacity),
            by_record: Cache::new(cache_capacity.div_ceil(4)),
        })
    }

    /// The database's type (`GeoIP2-City`, `GeoLite2-City`...).
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// When the database was built, in seconds since the Unix epoch.
    pub fn build_epoch(&self) -> u64 {
        self.reader.metadata().build_epoch
    }

    /// The geo columns of `ip` (cached); `None` for addresses that are not
    /// public or that the database does not know.
    pub fn get(&self, ip: IpAddr) -> Option<Arc<Geo>> {
        let ip = ip.to_canonical();
        if !is_public(ip) {
            return None;
        }
        self.by_address
            .get_or_insert_with(&ip, |&ip| self.lookup_shared(ip))
    }

    /// The tree walk, then the record from the record cache or decoded.
    fn lookup_shared(&self, ip: IpAddr) -> Option<Arc<Geo>> {
        let found = self.reader.lookup(ip).ok()?;
        let offset = found.offset()?;
        self.by_record.get_or_insert_with(&offset, |_| {
            let record = found.decode::<CityRecord<'_>>().ok()??;
            record.to_geo().map(Arc::new)
        })
    }

    /// Address cache statistics.
    pub fn cache_stats(&self) -> CacheStats {
        self.by_address.stats()
    }

    /// Forget every cached address and record (tests: lookups after a cold start).
    #[cfg(test)]
    fn clear_cache(&self) {
        self.by_address.clear();
        self.by_record.clear();
    }
}

impl CityRecord<'_> {
    fn to_geo(&self) -> Option<Geo> {
        let record = self;
        let name = |p: &Option<Place<'_>>| {
            p.as_ref()
                .and_then(|p| p.names.as_ref().and_then(|n| n.en))
                .map(str::to_owned)
        };
        let location = record.location.as_ref();
        let region = record.subdivisions.0.as_ref().and_then(|s| {
            s.names
                .as_ref()
                .and_then(|n| n.en)
                .or(s.iso_code)
                .map(str::to_owned)
        });
        let geo = Geo {
            country: record
                .country
                .as_ref()
                .and_then(|c| c.iso_code)
                .map(str::to_owned),
            region,
            city: name(&record.city),
            latitude: location.and_then(|l| l.latitude).filter(|x| x.is_finite()),
            longitude: location.and_then(|l| l.longitude).filter(|x| x.is_finite()),
            timezone: location.and_then(|l| l.time_zone).map(str::to_owned),
        };
        (!geo.is_empty()).then_some(geo)
    }
}

// The parts of a GeoIP2 City record that we store; everything else is
// skipped by the decoder.

#[derive(Deserialize, Default)]
struct CityRecord<'a> {
    #[serde(borrow, default)]
    country: Option<Place<'a>>,
    #[serde(borrow, default)]
    subdivisions: First<Place<'a>>,
    #[serde(borrow, default)]
    city: Option<Place<'a>>,
    #[serde(borrow, default)]
    location: Option<Location<'a>>,
}

#[derive(Deserialize, Default)]
struct Place<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
    #[serde(borrow, default)]
    names: Option<Names<'a>>,
}

#[derive(Deserialize, Default)]
struct Names<'a> {
    #[serde(borrow, default)]
    en: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct Location<'a> {
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
    #[serde(borrow, default)]
    time_zone: Option<&'a str>,
}

/// The first element of a list; the others are skipped without being
/// decoded or stored.
struct First<T>(Option<T>);

impl<T> Default for First<T> {
    fn default() -> Self {
        First(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for First<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = First<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let first = seq.next_element::<T>()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(First(first))
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn public_and_not_public_addresses() {
        for s in [
            "81.2.69.142",
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2001:480:10::1",
            "2a02:ff00::1",
            "2001:4860::8888",
            "2001:3::1",
            "::ffff:81.2.69.142",
        ] {
            assert!(is_public(ip(s)), "{s} is public");
        }
        for s in [
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "127.0.0.1",
            "169.254.1.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::81.2.69.142",
            "64:ff9b:1::1",
            "100::1",
            "2001:2::1",
            "2001:10::1",
            "2001:20::1",
            "2001:db8::1",
            "3fff::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip(s)), "{s} is not public");
        }
    }

    #[test]
    fn unreadable_databases_are_clear_errors() {
        let e = GeoDb::open(Path::new("/nonexistent/GeoLite2-City.mmdb"), 10).unwrap_err();
        assert!(e.contains("/nonexistent/GeoLite2-City.mmdb"), "{e}");
        let not_mmdb = std::env::temp_dir().join(format!("eb-not-mmdb-{}", std::process::id()));
        std::fs::write(&not_mmdb, b"this is not a MaxMind database").unwrap();
        let e = GeoDb::open(&not_mmdb, 10).unwrap_err();
        std::fs::remove_file(&not_mmdb).unwrap();
        assert!(e.contains("cannot open GeoIP database"), "{e}");
    }

    /// MaxMind's test databases (from ../shared, which CI has beside the
    /// repository).
    fn test_db(name: &str) -> std::path::PathBuf {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/testdata/geoip")
            .join(name);
        assert!(
            p.exists(),
            "{} missing: put the shared test data (../shared/testdata) beside the repository",
            p.display()
        );
        p
    }

    #[test]
    fn city_lookups_in_the_test_database() {
        let path = test_db("GeoIP2-City-Test.mmdb");
        // Room for every record here: with a tiny cache, a shard (1 or 2
        // slots) could evict London between the lookups below.
        let db = GeoDb::open(&path, 100_000).unwrap();
        assert_eq!(db.database_type(), "GeoIP2-City");
        let london = db.get(ip("81.2.69.142")).unwrap();
        assert_eq!(
            *london,
            Geo {
                country: Some("GB".into()),
                region: Some("England".into()),
                city: Some("London".into()),
                latitude: Some(51.5142),
                longitude: Some(-0.0931),
                timezone: Some("Europe/London".into()),
            }
        );
        let linkoping = db.get(ip("89.160.20.128")).unwrap();
        assert_eq!(linkoping.region.as_deref(), Some("Östergötland County"));
        assert_eq!(linkoping.city.as_deref(), Some("Linköping"));
        let san_diego = db.get(ip("2001:480:10::1")).unwrap();
        assert_eq!(san_diego.country.as_deref(), Some("US"));
        assert_eq!(san_diego.region.as_deref(), Some("California"));
        assert_eq!(san_diego.city.as_deref(), Some("San Diego"));
        // A country without a city.
        let japan = db.get(ip("2001:218::1")).unwrap();
        assert_eq!(japan.country.as_deref(), Some("JP"));
        assert_eq!(
            (japan.region.as_deref(), japan.city.as_deref()),
            (None, None)
        );
        assert_eq!(japan.timezone.as_deref(), Some("Asia/Tokyo"));
        // Unknown, private, mapped.
        assert_eq!(db.get(ip("8.8.8.8")), None);
        assert_eq!(db.get(ip("10.0.0.1")), None);
        assert_eq!(db.get(ip("::ffff:81.2.69.142")), Some(london.clone()));
        // Another address of the same record: the same decoded place.
        assert!(Arc::ptr_eq(&db.get(ip("81.2.69.143")).unwrap(), &london));
        // Cached, with hits counted.
        let before = db.cache_stats();
        db.get(ip("81.2.69.142"));
        let after = db.cache_stats();
        assert_eq!(after.hits, before.hits + 1);
        db.clear_cache();
        assert_eq!(db.cache_stats().entries, 0);
    }

    #[test]
    fn other_kinds_of_database_are_refused() {
        let path = test_db("GeoLite2-ASN-Test.mmdb");
        let e = GeoDb::open(&path, 10).unwrap_err();
        assert!(e.contains("GeoLite2-ASN"), "{e}");
        let country = test_db("GeoIP2-Country-Test.mmdb");
        let db = GeoDb::open(&country, 10).unwrap();
        let g = db.get(ip("81.2.69.142")).unwrap();
        assert_eq!(g.country.as_deref(), Some("GB"));
        assert_eq!(g.city, None);
    }
}
