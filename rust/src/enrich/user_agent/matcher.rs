//! The rules of one uap-core list: lazily compiled regexes and the
//! resolution of their replacement directives.
//!
//! Resolution follows uap-core's specification and its reference parsers
//! (uap-python, the `ua-parser` crate):
//!
//! * user agent `family_replacement`: `$1` is replaced by group 1, no other
//!   substitution, no trimming; without it, group 1. `v1_replacement`..
//!   `v4_replacement` are taken literally; without them, groups 2..5.
//! * OS (`os_replacement`, `os_v1_replacement`..`os_v4_replacement`) and
//!   device (`device_replacement`, `brand_replacement`,
//!   `model_replacement`): `$1`..`$9` are replaced by their groups (an
//!   unmatched or missing group gives an empty string), then the result is
//!   trimmed, and an empty result is absent. Without a replacement: the
//!   OS fields take groups 1..5, the device family and model group 1, the
//!   brand nothing.
//! * a group that did not participate, or matched an empty string, is
//!   absent; a family that resolves to nothing is `"Other"`.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use regex::bytes::{CaptureLocations, Regex, RegexBuilder};

use super::rules::{ListKind, RuleDef};
use super::syntax::Translated;

/// Upper bound on the compiled size of one regex. uap-core's largest
/// (the bot lists, the bounded repetitions of `[^;]`) take under 0.5 MiB
/// once rewritten (`syntax.rs`); a pathological upstream change fails the
/// tests (`every_embedded_regex_compiles`) instead of taking memory.
pub const REGEX_SIZE_LIMIT: usize = 4 << 20;
/// Upper bound on each regex's lazy-DFA cache (per thread using it). Most
/// rules use a few KiB; uap-core's big bot alternations (`^.{0,100}(bot|
/// crawl|...)`, case-insensitive) need 2-4 MiB to stay in the DFA: below
/// that they fall back to an NFA simulation ten times slower.
pub const DFA_SIZE_LIMIT: usize = 4 << 20;

/// One piece of a replacement template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Group(usize),
}

fn has_substitution(s: &str) -> bool {
    s.as_bytes()
        .windows(2)
        .any(|w| w[0] == b'$' && w[1].is_ascii_digit())
}

fn parse_template(s: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().and_then(|d| d.to_digit(10))) {
            ('$', Some(d)) => {
                chars.next();
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(Part::Group(d as usize));
            }
            _ => text.push(c),
        }
    }
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    parts
}

/// How one output field of a rule is computed from a match.
#[derive(Clone, Debug)]
enum Slot {
    /// Always absent.
    Absent,
    /// A fixed string.
    Literal(String),
    /// A capture group, absent when empty or unmatched.
    Group(usize),
    /// `$N` substitution, trimmed, absent when empty.
    Template(Vec<Part>),
    /// The user agent family: `$1` only, untrimmed.
    FamilyTemplate(String),
}

/// The groups of a match: where they are in the haystack (no locations
/// when the rule needs no captures: then no slot refers to a group).
#[derive(Clone, Copy)]
struct Groups<'l, 'h> {
    locations: Option<&'l CaptureLocations>,
    haystack: &'h str,
}

impl<'h> Groups<'_, 'h> {
    /// Group `i`, empty if it did not participate. A group cut inside a
    /// character (see `syntax.rs`) has it replaced by U+FFFD.
    fn text(self, i: usize) -> Cow<'h, str> {
        self.locations
            .and_then(|l| l.get(i))
            .map_or(Cow::Borrowed(""), |(start, end)| {
                // Checking the two ends is enough: the haystack is UTF-8.
                self.haystack.get(start..end).map_or_else(
                    || String::from_utf8_lossy(&self.haystack.as_bytes()[start..end]),
                    Cow::Borrowed,
                )
            })
    }

    /// Where the whole match is, if known.
    fn span(self) -> Option<(usize, usize)> {
        self.locations.and_then(|l| l.get(0))
    }

    /// Group `i`, absent if empty or unmatched.
    fn get(self, i: usize) -> Option<Cow<'h, str>> {
        Some(self.text(i)).filter(|s| !s.is_empty())
    }
}

impl Slot {
    fn new(kind: ListKind, slot: usize, repl: Option<&str>, groups: usize) -> Slot {
        let default_group = match (kind, slot) {
            (ListKind::UserAgent | ListKind::Os, i) => Some(i + 1),
            (ListKind::Device, 0 | 2) => Some(1),
            (ListKind::Device, _) => None,
        }
        .filter(|&g| g <= groups);
        let repl = repl.filter(|r| match kind {
            ListKind::UserAgent => !r.is_empty(),
            ListKind::Os | ListKind::Device => !r.trim().is_empty(),
        });
        match (kind, slot, repl) {
            (ListKind::UserAgent, 0, Some(r)) if r.contains("$1") => {
                Slot::FamilyTemplate(r.to_owned())
            }
            (ListKind::UserAgent, _, Some(r)) => Slot::Literal(r.to_owned()),
            (_, _, Some(r)) if has_substitution(r) => Slot::Template(parse_template(r)),
            (_, _, Some(r)) => Slot::Literal(r.to_owned()),
            (_, _, None) => default_group.map_or(Slot::Absent, Slot::Group),
        }
    }

    fn uses_groups(&self) -> bool {
        !matches!(self, Slot::Absent | Slot::Literal(_))
    }

    fn resolve(&self, groups: Groups<'_, '_>) -> Option<String> {
        match self {
            Slot::Absent => None,
            Slot::Literal(s) => Some(s.clone()),
            Slot::Group(i) => groups.get(*i).map(Cow::into_owned),
            Slot::FamilyTemplate(t) => {
                Some(t.replace("$1", groups.get(1).as_deref().unwrap_or("")))
            }
            Slot::Template(parts) => {
                let mut out = String::new();
                for part in parts {
                    match part {
                        Part::Text(s) => out.push_str(s),
                        Part::Group(i) => out.push_str(&groups.text(*i)),
                    }
                }
                let trimmed = out.trim();
                if trimmed.is_empty() {
                    None
                } else if trimmed.len() == out.len() {
                    Some(out)
                } else {
                    Some(trimmed.to_owned())
                }
            }
        }
    }
}

/// A compiled regex and its number among all compiled regexes (where its
/// capture locations are kept in [`LOCATIONS`]).
#[derive(Debug)]
struct Compiled {
    regex: Regex,
    id: usize,
}

/// Numbers given to compiled regexes.
static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Per thread, the capture locations of each compiled regex (by
    /// [`Compiled::id`]), reused from one search to the next instead of
    /// allocating captures per search.
    static LOCATIONS: RefCell<Vec<Option<CaptureLocations>>> = const { RefCell::new(Vec::new()) };
}

impl Compiled {
    /// Searches `haystack` and, on a match, calls `f` with its groups.
    fn captures<T>(&self, haystack: &str, f: impl FnOnce(Groups<'_, '_>) -> T) -> Option<T> {
        LOCATIONS.with(|all| {
            let mut all = all.borrow_mut();
            if all.len() <= self.id {
                all.resize_with(self.id + 1, || None);
            }
            let locations = all[self.id].get_or_insert_with(|| self.regex.capture_locations());
            self.regex.captures_read(locations, haystack.as_bytes())?;
            Some(f(Groups {
                locations: Some(locations),
                haystack,
            }))
        })
    }
}

/// A regex compiled on first use.
#[derive(Debug)]
struct LazyRegex {
    pattern: String,
    case_insensitive: bool,
    regex: OnceLock<Option<Compiled>>,
}

impl LazyRegex {
    fn new(pattern: &str, case_insensitive: bool) -> Self {
        LazyRegex {
            pattern: pattern.to_owned(),
            case_insensitive,
            regex: OnceLock::new(),
        }
    }

    fn compile(&self) -> Result<Regex, regex::Error> {
        RegexBuilder::new(&self.pattern)
            .case_insensitive(self.case_insensitive)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(DFA_SIZE_LIMIT)
            .build()
    }

    fn get(&self) -> Option<&Compiled> {
        self.regex
            .get_or_init(|| {
                let regex = self.compile().ok()?;
                let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
                Some(Compiled { regex, id })
            })
            .as_ref()
    }
}

/// The values of a rule's slots for a match (user agent and OS: family and
/// four version parts; device: family, brand, model and two unused).
pub type Resolved = [Option<String>; 5];

/// One rule: its regex (and relaxed form, see `syntax.rs`), compiled on
/// first use, and its replacement directives.
#[derive(Debug)]
pub struct Rule {
    exact: LazyRegex,
    relaxed: Option<LazyRegex>,
    /// User agents up to this many bytes need only the relaxed form.
    relaxed_is_exact_up_to: usize,
    slots: Vec<Slot>,
    /// False when every slot is literal: a match test is then enough
    /// (much cheaper than captures for uap-core's big bot alternations).
    needs_captures: bool,
}

impl Rule {
    pub fn new(kind: ListKind, def: &RuleDef, translated: &Translated) -> Rule {
        let groups = translated.hir.properties().explicit_captures_len();
        let n = match kind {
            ListKind::UserAgent | ListKind::Os => 5,
            ListKind::Device => 3,
        };
        let slots: Vec<Slot> = (0..n)
            .map(|i| Slot::new(kind, i, def.replacements[i].as_deref(), groups))
            .collect();
        let ci = def.case_insensitive;
        Rule {
            exact: LazyRegex::new(&translated.pattern, ci),
            relaxed: translated
                .relaxed
                .as_ref()
                .map(|r| LazyRegex::new(&r.pattern, ci)),
            relaxed_is_exact_up_to: translated.relaxed.as_ref().map_or(0, |r| r.exact_up_to),
            needs_captures: slots.iter().any(Slot::uses_groups),
            slots,
        }
    }

    /// Compiles the regexes now; the error of the first that fails.
    pub fn compile(&self) -> Result<(), regex::Error> {
        for re in std::iter::once(&self.exact).chain(&self.relaxed) {
            if re.get().is_none() {
                re.compile()?;
            }
        }
        Ok(())
    }

    /// The resolved slots if the rule matches `ua`. The regexes are
    /// compiled on first use; one that does not compile (only possible past
    /// the size limits, which the tests rule out for the shipped file) never
    /// matches.
    pub fn apply(&self, ua: &str) -> Option<Resolved> {
        let regex = match self.relaxed.as_ref().and_then(LazyRegex::get) {
            Some(relaxed) if ua.len() <= self.relaxed_is_exact_up_to => relaxed,
            // A relaxed match of at most `relaxed_is_exact_up_to` bytes is
            // the exact form's match, groups included: the exact form has
            // no match starting earlier (it matches a subset at each
            // start), and no repetition inside the span can exceed a
            // removed bound, so the relaxed form's preferred path is also
            // the exact form's, with the same higher-priority paths
            // failing before it. Only a longer match needs the exact form
            // (the large automaton, and its capture pass, are then rarely
            // run).
            Some(relaxed) if self.needs_captures => {
                let exact_up_to = self.relaxed_is_exact_up_to;
                match relaxed.captures(ua, |groups| {
                    groups
                        .span()
                        .filter(|&(start, end)| end - start <= exact_up_to)
                        .map(|_| self.resolve(groups))
                })? {
                    Some(resolved) => return Some(resolved),
                    None => self.exact.get()?,
                }
            }
            Some(relaxed) if !relaxed.regex.is_match(ua.as_bytes()) => return None,
            _ => self.exact.get()?,
        };
        if self.needs_captures {
            regex.captures(ua, |groups| self.resolve(groups))
        } else {
            regex.regex.is_match(ua.as_bytes()).then(|| {
                self.resolve(Groups {
                    locations: None,
                    haystack: ua,
                })
            })
        }
    }

    /// For tests: whether the relaxed form gives the same match and groups
    /// as the exact form on `ua` cut to the length where it claims to.
    #[cfg(test)]
    pub fn relaxed_agrees(&self, ua: &str) -> bool {
        let Some(relaxed) = self.relaxed.as_ref().and_then(LazyRegex::get) else {
            return true;
        };
        let exact = &self.exact.get().expect("compiles").regex;
        let relaxed = &relaxed.regex;
        let mut end = ua.len().min(self.relaxed_is_exact_up_to);
        while !ua.is_char_boundary(end) {
            end -= 1;
        }
        let ua = &ua.as_bytes()[..end];
        let spans = |re: &Regex| {
            re.captures(ua)
                .map(|c| c.iter().map(|m| m.map(|m| m.range())).collect::<Vec<_>>())
        };
        spans(relaxed) == spans(exact)
    }

    /// For tests: what [`Rule::apply`] gives with the exact form only.
    #[cfg(test)]
    pub fn apply_exact(&self, ua: &str) -> Option<Resolved> {
        self.exact
            .get()?
            .captures(ua, |groups| self.resolve(groups))
    }

    /// The patterns as compiled: exact, and relaxed if any.
    pub fn patterns(&self) -> (&str, Option<&str>) {
        (
            &self.exact.pattern,
            self.relaxed.as_ref().map(|r| r.pattern.as_str()),
        )
    }

    fn resolve(&self, groups: Groups<'_, '_>) -> Resolved {
        std::array::from_fn(|i| self.slots.get(i).and_then(|s| s.resolve(groups)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::user_agent::syntax::translate;

    fn run(kind: ListKind, regex: &str, repl: &[Option<&str>], ua: &str) -> Vec<Option<String>> {
        let mut replacements: [Option<String>; 5] = Default::default();
        for (i, r) in repl.iter().enumerate() {
            replacements[i] = r.map(str::to_owned);
        }
        let def = RuleDef {
            regex: regex.to_owned(),
            case_insensitive: false,
            replacements,
        };
        let rule = Rule::new(kind, &def, &translate(regex, false).unwrap());
        let n = if kind == ListKind::Device { 3 } else { 5 };
        rule.apply(ua).unwrap()[..n].to_vec()
    }

    fn s(x: &str) -> Option<String> {
        Some(x.to_owned())
    }

    #[test]
    fn templates() {
        assert_eq!(
            parse_template("a $1-$2$"),
            vec![
                Part::Text("a ".into()),
                Part::Group(1),
                Part::Text("-".into()),
                Part::Group(2),
                Part::Text("$".into())
            ]
        );
    }

    #[test]
    fn user_agent_rules() {
        // Spec example.
        let r = run(
            ListKind::UserAgent,
            r"(Namoroka|Shiretoko|Minefield)/(\d+)\.(\d+)\.(\d+(?:pre)?)",
            &[Some("Firefox ($1)")],
            "Gecko/20100727 Minefield/4.0.1pre",
        );
        assert_eq!(
            r,
            vec![s("Firefox (Minefield)"), s("4"), s("0"), s("1pre"), None]
        );
        // Literal version replacements, empty groups are absent.
        let r = run(
            ListKind::UserAgent,
            r"(Foo)(?:/(\d+)|)()",
            &[None, Some("9")],
            "Foo",
        );
        assert_eq!(r, vec![s("Foo"), s("9"), None, None, None]);
    }

    #[test]
    fn os_rules() {
        let r = run(
            ListKind::Os,
            r"Win(95|98|3\.1|NT|ME|2000)",
            &[Some("Windows $1")],
            "Mozilla/5.0 (Windows; U; Win95; en-US; rv:1.1)",
        );
        assert_eq!(r, vec![s("Windows 95"), None, None, None, None]);
        // Templates are trimmed, and absent when empty; `$N` past the groups is empty.
        let r = run(
            ListKind::Os,
            r"(X)(?: (\d+)|)",
            &[Some(" $1 "), Some("$2"), Some("$7"), Some("3")],
            "X",
        );
        assert_eq!(r, vec![s("X"), None, None, s("3"), None]);
    }

    #[test]
    fn device_rules() {
        // Spec example.
        let r = run(
            ListKind::Device,
            r"; (PEDI)_(PLUS)_(W) Build/",
            &[Some("$1_$2_$3"), Some("Odys"), Some("$1 $2 $3")],
            "(Linux; U; Android 4.2.2; de-de; PEDI_PLUS_W Build/JDQ39)",
        );
        assert_eq!(r, vec![s("PEDI_PLUS_W"), s("Odys"), s("PEDI PLUS W")]);
        // Defaults: family and model are group 1, no brand.
        let r = run(ListKind::Device, r"(Nexus \d+)", &[], "Nexus 5 Build");
        assert_eq!(r, vec![s("Nexus 5"), None, s("Nexus 5")]);
    }
}
