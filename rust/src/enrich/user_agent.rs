//! User-agent parsing following uap-core (`ua_browser`, `ua_browser_version`,
//! `ua_os`, `ua_os_version`, `ua_device_type`, `ua_device_brand`,
//! `ua_device_model`, `is_bot`).
//!
//! * [`UserAgentParser`] applies uap-core's `regexes.yaml` (embedded in the
//!   binary, see [`UAP_CORE_COMMIT`]) with uap-core's semantics: the first
//!   matching rule of each list wins, replacement directives as in the
//!   specification (details in `matcher.rs`), `"Other"` when nothing
//!   matches. [`UserAgentParser::ua`], [`UserAgentParser::os`] and
//!   [`UserAgentParser::device`] give the raw uap-core results;
//!   [`UserAgentParser::parse`] the summary stored with an event.
//! * [`UserAgentCache`] is a bounded, thread-safe cache in front of it.
//!
//! Only the first [`MAX_UA_LEN`] bytes of a user agent are looked at (cut
//! back to a character boundary): every uap-core test case is shorter, and
//! it bounds both the work per request and the memory of the cache.
//!
//! How (one file per step):
//! * `rules.rs` loads the YAML (embedded with `include_str!`);
//! * `syntax.rs` turns each expression into the `regex` crate's dialect:
//!   `\d`, `\w`, `\s`, `\b` are ASCII, `.` and negated ASCII classes match
//!   bytes, and a *relaxed* form drops large repetition bounds (used alone
//!   where provably identical, else as a cheap pre-check). None of
//!   uap-core's expressions uses look-around or backreferences, so the
//!   `regex` crate runs them all (no backtracking engine);
//! * `prefilter.rs` computes the literals each rule requires and, with one
//!   Aho-Corasick pass per user agent, selects the few rules that can match
//!   (about 1-2 user agent, 1 OS and 4-6 device rules tried per user agent
//!   instead of 1,270), without changing which rule matches first;
//! * `matcher.rs` compiles regexes on first use and resolves the
//!   replacement directives;
//! * `classify.rs` derives [`DeviceType`] and `is_bot`;
//! * `cache.rs` is the bounded cache (the enrichment [`Cache`](crate::enrich::cache::Cache)).
//!
//! Costs (`cargo run --release --example user_agent_bench`, 2-core machine):
//! building the parser takes ~70 ms and 11 MiB; parsing a user agent never
//! seen takes 6.5-7 µs once the regexes it needs are compiled (the first
//! sight of a new kind of user agent also compiles them: `compile_all`
//! does all 1,270 in ~0.1 s and ~40 MiB); a cache hit takes ~0.07 µs.
//! Memory grows with the variety of user agents seen, up to ~100 MiB when
//! every rule has been used (compiled regexes and their per-thread caches).
//!
//! Kept rather than the `ua-parser` crate of the uap project (uap-rust
//! 0.2.2), measured side by side on the same `regexes.yaml` by
//! `cargo run --release --example user_agent_bench` (2-core machine shared
//! with other work, 2026-12-02): both pass all 18,213 cases of uap-core's
//! suites; µs per user agent (ua + os + device, uncached, best of 5
//! alternating passes) ours / ua-parser: uap-core's 17,816 distinct test
//! user agents 7.6 / 20.9, a real corpus (fake-useragent's 839 distinct
//! user agents) 7.0 / 19.2, 200,000 drawn from it by traffic share
//! 11.3 / 16.9 (an earlier run: 16.9 / 26.2, 13.8 / 29.4, 10.4 / 25.4);
//! heap once built 10.6 / 22.2 MiB, after every workload 69.3 / 62.6 MiB.
//! The crate is within 20 % on memory but 1.5-2.8× slower: by issue 16's
//! rule (within 20 % on both) ours stays.

mod cache;
mod classify;
mod matcher;
mod prefilter;
mod rules;
mod syntax;

use std::fmt;
use std::sync::LazyLock;

pub use crate::enrich::cache::CacheStats;
pub use cache::{UserAgentCache, DEFAULT_CAPACITY};
pub use rules::UAP_CORE_COMMIT;

use matcher::{Resolved, Rule};
use prefilter::{Candidates, Prefilter};
use rules::{ListKind, RuleDef};

/// Bytes of a user agent that are parsed (and used as cache key); the rest
/// is ignored.
pub const MAX_UA_LEN: usize = 512;

/// `s` cut to at most [`MAX_UA_LEN`] bytes, on a character boundary.
pub fn truncate_user_agent(s: &str) -> &str {
    if s.len() <= MAX_UA_LEN {
        return s;
    }
    let mut end = MAX_UA_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The kind of device an event came from (`ua_device_type`).
///
/// Decided from uap-core's three results and the user agent itself; the
/// first rule that applies wins (the lists are in `classify.rs`):
///
/// 1. **Bot** (`is_bot`): uap-core's device family is `Spider` (its crawler
///    detection); or the user agent family contains `bot`, `spider`,
///    `crawl`, `slurp`, `scrape`, `archiver`, `indexer`, `headless`,
///    `phantomjs` or `lighthouse` (any case: Googlebot, bingbot, Applebot,
///    HeadlessChrome...); or it is an HTTP library or command-line client
///    (curl, Wget, Python Requests, Python-urllib, aiohttp, Go-http-client,
///    Apache-HttpClient, Java, libwww-perl, PostmanRuntime, axios, Scrapy...),
///    or the user agent starts like one uap-core does not name (`python-`,
///    `node-fetch`, `undici`, `ruby`...). Mobile-app HTTP stacks (okhttp,
///    Dalvik, CFNetwork) are *not* bots: they carry real users.
/// 2. **Other** for TVs, streaming sticks, consoles, VR headsets and watches:
///    markers such as `SmartTV`/`SMART-TV`, `HbbTV`, `Web0S`, `BRAVIA`,
///    `Android TV`, `CrKey`/`Chromecast`, `Roku`, `AppleTV`, Fire TV models
///    (`AFT…`), `PlayStation`, `Xbox`, `Nintendo`, `Oculus`/`Quest`, and the
///    watchOS/tvOS families. (Checked before the next rules because a TV may
///    say `Mobile` and an Xbox says `Windows NT`.)
/// 3. **Tablet**: an iPad, a Kindle, uap-core's `Generic Tablet` /
///    `Generic_Android_Tablet`, a PlayBook, a user agent saying `Tablet`,
///    or an Android *browser* (one saying `Safari`, `Firefox` or `Gecko`)
///    without `Mobile`, which is how Android tablets identify themselves.
/// 4. **Mobile**: an iPhone/iPod/iOS device, any other iOS or Android user
///    agent (apps), a phone OS (Windows Phone, BlackBerry OS, Symbian, KaiOS,
///    Firefox OS, Tizen, HarmonyOS...), uap-core's generic smartphone and
///    feature phone, Opera Mini, or a user agent saying `Mobile`.
/// 5. **Desktop**: a desktop OS (Windows, Mac OS X, Linux and its
///    distributions, Chrome OS, the BSDs, Solaris...) with no device
///    recognised (uap-core's device `Other`, or `Mac`).
/// 6. **Other** otherwise (nothing recognised).
///
/// Known limits: an iPad in "desktop mode" sends a Mac user agent and
/// counts as desktop; Windows tablets count as desktops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceType {
    Desktop,
    Mobile,
    Tablet,
    Bot,
    Other,
}

impl DeviceType {
    /// The stored name: `desktop`, `mobile`, `tablet`, `bot` or `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceType::Desktop => "desktop",
            DeviceType::Mobile => "mobile",
            DeviceType::Tablet => "tablet",
            DeviceType::Bot => "bot",
            DeviceType::Other => "other",
        }
    }
}

impl fmt::Display for DeviceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an event stores about its user agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserAgent {
    /// uap-core's user agent family (`"Chrome"`, `"Mobile Safari"`,
    /// `"Googlebot"`...); `None` for uap-core's `"Other"`.
    pub browser: Option<String>,
    /// `major.minor.patch`, as far as present (`"120.0.6099"`, `"17"`).
    pub browser_version: Option<String>,
    /// uap-core's OS family (`"Windows"`, `"Mac OS X"`, `"iOS"`,
    /// `"Android"`...); `None` for `"Other"`.
    pub os: Option<String>,
    /// `major.minor.patch`, as far as present.
    pub os_version: Option<String>,
    /// uap-core's device brand (`"Apple"`, `"Samsung"`...).
    pub device_brand: Option<String>,
    /// uap-core's device model (`"iPhone"`, `"SM-G991B"`...).
    pub device_model: Option<String>,
    /// uap-core's device family (`"iPhone"`, `"Samsung SM-G991B"`,
    /// `"Spider"`...); `None` for `"Other"`.
    pub device_family: Option<String>,
    /// Desktop, mobile, tablet, bot or other: the rules are on
    /// [`DeviceType`].
    pub device_type: DeviceType,
    /// `device_type == DeviceType::Bot`: crawlers, monitors, headless
    /// browsers, HTTP libraries and command-line clients.
    pub is_bot: bool,
}

/// uap-core's result for a list whose rules give a family and a version
/// (`user_agent_parsers`, `os_parsers`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawVersioned {
    /// `"Other"` when no rule matched.
    pub family: String,
    pub major: Option<String>,
    pub minor: Option<String>,
    pub patch: Option<String>,
    pub patch_minor: Option<String>,
}

/// uap-core's `user_agent_parsers` result.
pub type RawUserAgent = RawVersioned;

/// uap-core's `os_parsers` result.
pub type RawOs = RawVersioned;

/// uap-core's `device_parsers` result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawDevice {
    /// `"Other"` when no rule matched.
    pub family: String,
    pub brand: Option<String>,
    pub model: Option<String>,
}

/// A `regexes.yaml` that could not be turned into a parser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParserError(String);

impl fmt::Display for ParserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParserError {}

const UA: usize = 0;
const OS: usize = 1;
const DEVICE: usize = 2;
const KINDS: [ListKind; 3] = [ListKind::UserAgent, ListKind::Os, ListKind::Device];

/// uap-core's parser. Build it once ([`UserAgentParser::global`] holds
/// the one for the embedded rules) and share it: it is `Send + Sync`.
#[derive(Debug)]
pub struct UserAgentParser {
    lists: [Vec<Rule>; 3],
    prefilter: Prefilter,
}

static GLOBAL: LazyLock<UserAgentParser> = LazyLock::new(UserAgentParser::new);

impl Default for UserAgentParser {
    fn default() -> Self {
        Self::new()
    }
}

impl UserAgentParser {
    /// The parser for the embedded uap-core rules (a test guarantees that
    /// they load). Regexes are compiled on first use.
    pub fn new() -> Self {
        Self::from_yaml(rules::REGEXES_YAML).expect("embedded regexes.yaml must load")
    }

    /// The process-wide parser for the embedded rules, built on first use.
    pub fn global() -> &'static UserAgentParser {
        &GLOBAL
    }

    /// A parser for another `regexes.yaml` (same format as uap-core's).
    pub fn from_yaml(yaml: &str) -> Result<Self, ParserError> {
        let file = rules::load(yaml).map_err(|e| ParserError(e.to_string()))?;
        let defs: [&[RuleDef]; 3] = [&file.user_agent, &file.os, &file.device];
        let mut lists: [Vec<Rule>; 3] = Default::default();
        let mut atoms = Vec::with_capacity(3);
        for (l, defs) in defs.iter().enumerate() {
            let kind = KINDS[l];
            let mut list_atoms = Vec::with_capacity(defs.len());
            for (i, def) in defs.iter().enumerate() {
                let translated =
                    syntax::translate(&def.regex, def.case_insensitive).map_err(|e| {
                        ParserError(format!("{}[{i}] {:?}: {e}", kind.key(), def.regex))
                    })?;
                list_atoms.push(prefilter::requirement(&translated.hir));
                lists[l].push(Rule::new(kind, def, &translated));
            }
            atoms.push(list_atoms);
        }
        let prefilter = Prefilter::new(&atoms).map_err(ParserError)?;
        Ok(UserAgentParser { lists, prefilter })
    }

    /// Compiles every regex now instead of on first use (e.g. at start-up,
    /// off the request path). Returns the number of regexes, or the first
    /// that does not compile.
    pub fn compile_all(&self) -> Result<usize, ParserError> {
        let mut n = 0;
        for (l, list) in self.lists.iter().enumerate() {
            for (i, rule) in list.iter().enumerate() {
                rule.compile().map_err(|e| {
                    ParserError(format!(
                        "{}[{i}] {:?}: {e}",
                        KINDS[l].key(),
                        rule.patterns()
                    ))
                })?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Rule counts (user agent, OS, device), atoms in the prefilter, and
    /// rules per list that the prefilter cannot rule out.
    pub fn stats(&self) -> ParserStats {
        ParserStats {
            rules: [
                self.lists[UA].len(),
                self.lists[OS].len(),
                self.lists[DEVICE].len(),
            ],
            atoms: self.prefilter.atom_count(),
            always_tried: [
                self.prefilter.always_count(UA),
                self.prefilter.always_count(OS),
                self.prefilter.always_count(DEVICE),
            ],
        }
    }

    fn candidates(&self, ua: &str) -> Candidates<'_> {
        let mut folded = String::with_capacity(ua.len());
        prefilter::fold_into(ua, &mut folded);
        self.prefilter.candidates(&folded)
    }

    /// The slots of the first matching rule of list `l`.
    fn first_match(&self, l: usize, ua: &str, candidates: &Candidates<'_>) -> Option<Resolved> {
        candidates.iter(l).find_map(|r| {
            let rule = &self.lists[l][r];
            rule.apply(ua)
        })
    }

    /// The result of list `l` (user agent or OS: family and version).
    fn raw_versioned(&self, l: usize, ua: &str, c: &Candidates<'_>) -> RawVersioned {
        let Some([family_, major, minor, patch, patch_minor]) = self.first_match(l, ua, c) else {
            return RawVersioned {
                family: OTHER.to_owned(),
                ..Default::default()
            };
        };
        RawVersioned {
            family: family(family_),
            major,
            minor,
            patch,
            patch_minor,
        }
    }

    fn raw_device(&self, ua: &str, c: &Candidates<'_>) -> RawDevice {
        let Some(mut s) = self.first_match(DEVICE, ua, c) else {
            return RawDevice {
                family: OTHER.to_owned(),
                ..Default::default()
            };
        };
        RawDevice {
            family: family(s[0].take()),
            brand: s[1].take(),
            model: s[2].take(),
        }
    }

    /// uap-core's user agent (browser) result for `ua`.
    pub fn ua(&self, ua: &str) -> RawUserAgent {
        let ua = truncate_user_agent(ua);
        self.raw_versioned(UA, ua, &self.candidates(ua))
    }

    /// uap-core's OS result for `ua`.
    pub fn os(&self, ua: &str) -> RawOs {
        let ua = truncate_user_agent(ua);
        self.raw_versioned(OS, ua, &self.candidates(ua))
    }

    /// uap-core's device result for `ua`.
    pub fn device(&self, ua: &str) -> RawDevice {
        let ua = truncate_user_agent(ua);
        self.raw_device(ua, &self.candidates(ua))
    }

    /// The three raw results at once (one prefilter pass).
    pub fn parse_raw(&self, ua: &str) -> (RawUserAgent, RawOs, RawDevice) {
        let ua = truncate_user_agent(ua);
        let c = self.candidates(ua);
        (
            self.raw_versioned(UA, ua, &c),
            self.raw_versioned(OS, ua, &c),
            self.raw_device(ua, &c),
        )
    }

    /// The summary stored with an event.
    pub fn parse(&self, ua: &str) -> UserAgent {
        let ua = truncate_user_agent(ua);
        let (agent, os, device) = self.parse_raw(ua);
        let device_type = classify::device_type(ua, &agent, &os, &device);
        UserAgent {
            browser: not_other(agent.family),
            browser_version: version(&[&agent.major, &agent.minor, &agent.patch]),
            os: not_other(os.family),
            os_version: version(&[&os.major, &os.minor, &os.patch]),
            device_brand: device.brand,
            device_model: device.model,
            device_family: not_other(device.family),
            device_type,
            is_bot: device_type == DeviceType::Bot,
        }
    }
}

/// Numbers describing a [`UserAgentParser`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParserStats {
    pub rules: [usize; 3],
    pub atoms: usize,
    pub always_tried: [usize; 3],
}

const OTHER: &str = "Other";

fn family(f: Option<String>) -> String {
    f.filter(|f| !f.is_empty())
        .unwrap_or_else(|| OTHER.to_owned())
}

fn not_other(f: String) -> Option<String> {
    (f != OTHER && !f.is_empty()).then_some(f)
}

/// The leading present parts joined with dots.
fn version(parts: &[&Option<String>]) -> Option<String> {
    let mut out = String::new();
    for part in parts {
        let Some(p) = part else { break };
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(p);
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<UserAgentParser>();
        check::<UserAgentCache>();
    }

    #[test]
    fn truncation_keeps_char_boundaries() {
        let long = "é".repeat(400);
        let t = truncate_user_agent(&long);
        assert!(t.len() <= MAX_UA_LEN && t.len() >= MAX_UA_LEN - 1);
        assert_eq!(truncate_user_agent("abc"), "abc");
    }

    #[test]
    fn versions_join_leading_parts() {
        let s = |x: &str| Some(x.to_owned());
        assert_eq!(
            version(&[&s("1"), &s("2"), &s("3")]).as_deref(),
            Some("1.2.3")
        );
        assert_eq!(version(&[&s("1"), &None, &s("3")]).as_deref(), Some("1"));
        assert_eq!(version(&[&None, &s("2")]), None);
    }

    #[test]
    fn nothing_matches_gives_other() {
        let p = UserAgentParser::global();
        let ua = p.ua("");
        assert_eq!(ua.family, "Other");
        assert_eq!(ua.major, None);
        assert_eq!(p.os("").family, "Other");
        assert_eq!(p.device("").family, "Other");
        let parsed = p.parse("");
        assert_eq!(parsed.browser, None);
        assert_eq!(parsed.device_type, DeviceType::Other);
        assert!(!parsed.is_bot);
    }

    #[test]
    fn every_embedded_regex_compiles() {
        let p = UserAgentParser::new();
        let n = p.compile_all().unwrap();
        let stats = p.stats();
        assert_eq!(n, stats.rules.iter().sum::<usize>());
    }

    /// User agents from uap-core's test files (every `step`-th).
    fn corpus_sample(step: usize) -> Vec<String> {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/uap-core");
        let mut out = Vec::new();
        for file in ["test_ua.yaml", "test_os.yaml", "test_device.yaml"] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| {
                panic!("{}/{file}: {e}: put the shared test data (../shared/testdata) beside the repository", dir.display())
            });
            let docs = yaml_rust2::YamlLoader::load_from_str(&text).unwrap();
            let cases = docs[0]["test_cases"].as_vec().unwrap();
            out.extend(
                cases
                    .iter()
                    .step_by(step)
                    .filter_map(|c| c["user_agent_string"].as_str().map(str::to_owned)),
            );
        }
        out
    }

    /// Soundness of the prefilter: every rule that matches a user agent is
    /// among its candidates (so skipping the others never changes which
    /// rule matches first). Checked by brute force on real user agents and
    /// on case-changed copies (which exercise the folding and the
    /// case-insensitive rules).
    #[test]
    fn prefilter_is_sound() {
        let p = UserAgentParser::global();
        let mut uas = corpus_sample(100);
        uas.extend(
            [
                "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
                "\u{212A}indle/3.0 \u{17F}pider ÄÖÜ Ünïcödé/1.0",
            ]
            .map(str::to_owned),
        );
        let variants: Vec<String> = uas
            .iter()
            .flat_map(|ua| [ua.clone(), ua.to_uppercase(), ua.to_lowercase()])
            .collect();
        let mut matches = 0;
        for ua in &variants {
            let candidates = p.candidates(ua);
            for (l, list) in p.lists.iter().enumerate() {
                let allowed: Vec<usize> = candidates.iter(l).collect();
                for (r, rule) in list.iter().enumerate() {
                    if rule.apply(ua).is_some() {
                        matches += 1;
                        assert!(
                            allowed.binary_search(&r).is_ok(),
                            "{}[{r}] {:?} matches {ua:?} but was filtered out",
                            KINDS[l].key(),
                            rule.patterns()
                        );
                    }
                }
            }
        }
        assert!(
            matches > variants.len(),
            "the check must see matches: {matches}"
        );
    }

    /// The relaxed forms (`syntax.rs`) agree with the exact ones, groups
    /// included, on user agents no longer than their bounds.
    #[test]
    fn relaxed_forms_are_exact_below_their_bounds() {
        let p = UserAgentParser::global();
        let uas = corpus_sample(200);
        let mut checked = 0;
        for (l, list) in p.lists.iter().enumerate() {
            for (r, rule) in list.iter().enumerate() {
                if rule.patterns().1.is_none() {
                    continue;
                }
                for ua in &uas {
                    assert!(
                        rule.relaxed_agrees(ua),
                        "{}[{r}] {:?} on {ua:?}",
                        KINDS[l].key(),
                        rule.patterns()
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 0);
    }

    /// Rules with a relaxed form give the exact form's result on whole
    /// user agents too (a short enough relaxed match is taken as is).
    #[test]
    fn relaxed_matches_give_exact_results() {
        let p = UserAgentParser::global();
        let uas = corpus_sample(50);
        let mut matched = 0;
        for (l, list) in p.lists.iter().enumerate() {
            for (r, rule) in list.iter().enumerate() {
                if rule.patterns().1.is_none() {
                    continue;
                }
                for ua in &uas {
                    let exact = rule.apply_exact(ua);
                    matched += usize::from(exact.is_some());
                    assert_eq!(
                        rule.apply(ua),
                        exact,
                        "{}[{r}] {:?} on {ua:?}",
                        KINDS[l].key(),
                        rule.patterns()
                    );
                }
            }
        }
        assert!(matched > 0);
    }

    #[test]
    fn overlong_user_agents_are_cut() {
        let p = UserAgentParser::global();
        let ua = format!(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 {}",
            "x".repeat(100_000)
        );
        let parsed = p.parse(&ua);
        assert_eq!(parsed.browser.as_deref(), Some("Chrome"));
        assert_eq!(parsed.os.as_deref(), Some("Windows"));
    }
}
