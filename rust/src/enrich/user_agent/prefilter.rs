//! A literal prefilter, so that a user agent is not run through ~1,300
//! regexes one by one.
//!
//! For every rule we compute, from its parsed form, a *requirement*: a
//! conjunction of clauses, each clause a set of literal *atoms* of which at
//! least one occurs in any string the rule matches. `; *(Nexus \d+) Build`
//! requires `nexus ` and ` build`; `(?:Kindle|Silk)/(\d+)` requires
//! `kindle/` or `silk/`. One Aho-Corasick pass over the user agent finds the
//! atoms present; only the rules whose clauses are all satisfied (plus the
//! few rules with no usable atom) are tried, in file order, so uap-core's
//! first-match-wins semantics are untouched: the prefilter only skips rules
//! that cannot match.
//!
//! Atoms and haystack are compared after the same per-character folding
//! ([`fold_char`]), which makes one atom serve both case-sensitive and
//! case-insensitive rules. The analysis is sound by construction: every
//! step only ever weakens a requirement (an unknown part requires nothing),
//! never strengthens it; `tests::prefilter_is_sound` in `user_agent.rs`
//! checks it against brute force on real user agents.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

use aho_corasick::automaton::Automaton;
use aho_corasick::dfa::DFA;
use aho_corasick::{Anchored, MatchKind};
use regex_syntax::hir::{Class, Hir, HirKind};

/// Exact-string sets larger than this are abandoned (cross products of
/// small classes grow fast).
const MAX_EXACT: usize = 64;
/// Classes with more members than this are "anything".
const MAX_CLASS: u32 = 10;
/// Shorter atoms would be present in nearly every user agent: a clause
/// with a shorter atom is dropped (it requires nothing useful).
const MIN_ATOM_CHARS: usize = 2;

/// A set of atoms, at least one of which must be present.
pub type Clause = BTreeSet<String>;

/// The folding applied to atoms and haystacks alike: ASCII lowercase, the
/// two non-ASCII characters that Unicode case-insensitivity maps onto ASCII
/// letters, and single-character lowercasing elsewhere.
pub fn fold_char(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    match c {
        '\u{212A}' => 'k', // KELVIN SIGN
        '\u{17F}' => 's',  // LATIN SMALL LETTER LONG S
        _ => {
            let mut lower = c.to_lowercase();
            match (lower.next(), lower.next()) {
                (Some(l), None) => l,
                _ => c,
            }
        }
    }
}

/// Folds `s` into `out` (cleared first).
pub fn fold_into(s: &str, out: &mut String) {
    out.clear();
    if s.is_ascii() {
        out.push_str(s);
        out.make_ascii_lowercase();
    } else {
        out.extend(s.chars().map(fold_char));
    }
}

fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    fold_into(s, &mut out);
    out
}

/// What a sub-expression tells about the strings it matches.
#[derive(Clone, Debug, Default)]
struct Info {
    /// The expression matches exactly one of these (folded) strings.
    exact: Option<BTreeSet<String>>,
    /// Every string it matches satisfies all these clauses.
    clauses: Vec<Clause>,
}

impl Info {
    fn anything() -> Self {
        Info::default()
    }

    fn exact(set: BTreeSet<String>) -> Self {
        let clauses = clause(&set).into_iter().collect();
        Info {
            exact: Some(set),
            clauses,
        }
    }

    /// The most selective single clause.
    fn best_clause(self) -> Option<Clause> {
        self.clauses.into_iter().max_by_key(selectivity)
    }
}

/// How selective a clause probably is (higher: rarer): longest shortest
/// atom first, then fewest atoms.
fn selectivity(clause: &Clause) -> (usize, std::cmp::Reverse<usize>) {
    let shortest = clause.iter().map(|s| s.chars().count()).min().unwrap_or(0);
    (shortest, std::cmp::Reverse(clause.len()))
}

/// Typical user agents, folded. A clause with an atom found in one of them
/// is satisfied by most traffic (` build`, `applewebkit/`, `mozilla/`):
/// a poor trigger, since every rule it triggers must then be looked at.
const TYPICAL: &[&str] = &[
    "mozilla/5.0 (windows nt 10.0; win64; x64) applewebkit/537.36 (khtml, like gecko) chrome/120.0.0.0 safari/537.36 edg/120.0.0.0",
    "mozilla/5.0 (macintosh; intel mac os x 10_15_7) applewebkit/605.1.15 (khtml, like gecko) version/17.1 safari/605.1.15",
    "mozilla/5.0 (iphone; cpu iphone os 17_1 like mac os x) applewebkit/605.1.15 (khtml, like gecko) version/17.1 mobile/15e148 safari/604.1",
    "mozilla/5.0 (linux; android 13; sm-s911b build/tp1a.220624.014; wv) applewebkit/537.36 (khtml, like gecko) version/4.0 chrome/120.0.0.0 mobile safari/537.36",
    "mozilla/5.0 (linux; u; android 4.0.3; en-us; htc sensation build/iml74k) applewebkit/534.30 (khtml, like gecko) version/4.0 mobile safari/534.30",
    "mozilla/5.0 (x11; ubuntu; linux x86_64; rv:121.0) gecko/20100101 firefox/121.0",
];

/// How good a trigger a clause is (higher: better): one that typical
/// user agents do not satisfy, then the most selective.
fn trigger_rank(clause: &Clause) -> (bool, (usize, std::cmp::Reverse<usize>)) {
    let typical = clause
        .iter()
        .any(|atom| TYPICAL.iter().any(|ua| ua.contains(atom.as_str())));
    (!typical, selectivity(clause))
}

/// An exact set as a clause, if every member is long enough.
fn clause(set: &BTreeSet<String>) -> Option<Clause> {
    let ok = !set.is_empty() && set.iter().all(|s| s.chars().count() >= MIN_ATOM_CHARS);
    ok.then(|| minimize(set.clone()))
}

/// Drops the atoms that contain another atom of the clause: wherever they
/// occur, the shorter one does too.
fn minimize(set: Clause) -> Clause {
    set.iter()
        .filter(|a| {
            !set.iter()
                .any(|b| b.len() < a.len() && a.contains(b.as_str()))
        })
        .cloned()
        .collect()
}

fn cross(a: &BTreeSet<String>, b: &BTreeSet<String>) -> Option<BTreeSet<String>> {
    if a.len() * b.len() > MAX_EXACT {
        return None;
    }
    Some(
        a.iter()
            .flat_map(|x| b.iter().map(move |y| format!("{x}{y}")))
            .collect(),
    )
}

fn empty_string() -> BTreeSet<String> {
    BTreeSet::from([String::new()])
}

fn analyze(hir: &Hir) -> Info {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Info::exact(empty_string()),
        HirKind::Literal(lit) => match std::str::from_utf8(&lit.0) {
            Ok(s) => Info::exact(BTreeSet::from([fold(s)])),
            Err(_) => Info::anything(),
        },
        HirKind::Class(Class::Unicode(class)) => {
            let size: u32 = class
                .ranges()
                .iter()
                .map(|r| u32::from(r.end()) - u32::from(r.start()) + 1)
                .sum();
            if size == 0 || size > MAX_CLASS {
                return Info::anything();
            }
            let members = class
                .ranges()
                .iter()
                .flat_map(|r| r.start()..=r.end())
                .map(|c| fold_char(c).to_string())
                .collect();
            Info::exact(members)
        }
        HirKind::Class(Class::Bytes(_)) => Info::anything(),
        HirKind::Capture(cap) => analyze(&cap.sub),
        HirKind::Repetition(rep) => {
            let sub = analyze(&rep.sub);
            match (rep.min, rep.max) {
                (1, Some(1)) => sub,
                (0, Some(1)) => match sub.exact {
                    Some(mut set) => {
                        set.insert(String::new());
                        Info::exact(set)
                    }
                    None => Info::anything(),
                },
                (0, _) => Info::anything(),
                _ => Info {
                    exact: None,
                    clauses: sub.clauses,
                },
            }
        }
        HirKind::Concat(subs) => {
            // Adjacent exact parts are multiplied out into longer strings
            // (a "run"); each run and each inexact part adds its clauses.
            let mut run = empty_string();
            let mut all_exact = true;
            let mut clauses = Vec::new();
            for sub in subs {
                let info = analyze(sub);
                match info.exact {
                    Some(set) => match cross(&run, &set) {
                        Some(product) => run = product,
                        None => {
                            clauses.extend(clause(&run));
                            all_exact = false;
                            run = set;
                        }
                    },
                    None => {
                        clauses.extend(clause(&run));
                        clauses.extend(info.clauses);
                        all_exact = false;
                        run = empty_string();
                    }
                }
            }
            if all_exact {
                return Info::exact(run);
            }
            clauses.extend(clause(&run));
            clauses.sort();
            clauses.dedup();
            Info {
                exact: None,
                clauses,
            }
        }
        HirKind::Alternation(subs) => {
            let infos: Vec<Info> = subs.iter().map(analyze).collect();
            let exact = infos
                .iter()
                .map(|i| i.exact.as_ref())
                .collect::<Option<Vec<_>>>()
                .map(|sets| sets.into_iter().flatten().cloned().collect::<BTreeSet<_>>())
                .filter(|set| set.len() <= MAX_EXACT);
            if let Some(set) = exact {
                return Info::exact(set);
            }
            // Each branch requires its best clause, so the alternation
            // requires one of their atoms.
            let union = infos
                .into_iter()
                .map(Info::best_clause)
                .collect::<Option<Vec<_>>>()
                .map(|clauses| minimize(clauses.into_iter().flatten().collect()));
            Info {
                exact: None,
                clauses: union.into_iter().collect(),
            }
        }
    }
}

/// The requirement of a rule: every clause must have an atom present (in
/// the folded user agent). Empty: the rule must always be tried.
pub fn requirement(hir: &Hir) -> Vec<Clause> {
    analyze(hir).clauses
}

/// Which rules of each list may match a given user agent.
#[derive(Clone, Debug)]
pub struct Candidates<'p> {
    /// One bit per rule, the lists one after the other.
    bits: Vec<u64>,
    /// Where each list starts in `bits` (in words), and the end.
    offsets: &'p [usize],
}

impl Candidates<'_> {
    /// The candidate rule indices of `list`, in ascending (file) order.
    pub fn iter(&self, list: usize) -> impl Iterator<Item = usize> + '_ {
        self.bits[self.offsets[list]..self.offsets[list + 1]]
            .iter()
            .enumerate()
            .flat_map(|(w, &word)| BitIter(word).map(move |b| w * 64 + b))
    }
}

/// Per-thread working memory of [`Prefilter::candidates`]: a clause is
/// satisfied when stamped with the current call's generation (so nothing
/// is cleared between calls); `hits` lists the satisfied clauses.
#[derive(Default)]
struct Scratch {
    generation: u32,
    clause_stamp: Vec<u32>,
    hits: Vec<u32>,
}

impl Scratch {
    fn next_generation(&mut self, clauses: usize) -> u32 {
        if self.clause_stamp.len() < clauses {
            self.clause_stamp.resize(clauses, 0);
        }
        self.hits.clear();
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.clause_stamp.fill(0);
            self.generation = 1;
        }
        self.generation
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

struct BitIter(u64);

impl Iterator for BitIter {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let b = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(b)
    }
}

/// A rule with a requirement. It is looked at only when its most
/// selective clause (its trigger) is satisfied; then its other clauses
/// (`other_clauses[others]`) are checked.
#[derive(Clone, Debug)]
struct Target {
    list: u16,
    rule: u32,
    others: std::ops::Range<usize>,
}

/// The prefilter over several rule lists at once (one Aho-Corasick pass for
/// the user agent, OS and device lists).
#[derive(Debug)]
pub struct Prefilter {
    /// Every atom, walked byte by byte (see [`Prefilter::candidates`]).
    automaton: Option<DFA>,
    /// Atom → the clauses it satisfies.
    atom_clauses: Vec<Vec<u32>>,
    /// Clause → the targets it triggers.
    clause_targets: Vec<Vec<u32>>,
    targets: Vec<Target>,
    other_clauses: Vec<u32>,
    /// The rules without requirement (bits, lists one after the other).
    always: Vec<u64>,
    /// Where each list starts in the bit vectors (in words), and the end.
    offsets: Vec<usize>,
}

impl Prefilter {
    /// `lists[l][r]` is the requirement of rule `r` of list `l`.
    pub fn new(lists: &[Vec<Vec<Clause>>]) -> Result<Self, String> {
        let mut atom_ids = HashMap::<&str, usize>::new();
        let mut patterns: Vec<&str> = Vec::new();
        let mut atom_clauses: Vec<Vec<u32>> = Vec::new();
        let mut clause_ids = HashMap::<&Clause, u32>::new();
        let mut clause_targets: Vec<Vec<u32>> = Vec::new();
        let mut targets = Vec::new();
        let mut other_clauses = Vec::new();
        let mut offsets = vec![0];
        for rules in lists {
            offsets.push(offsets.last().copied().unwrap_or(0) + rules.len().div_ceil(64));
        }
        let mut always = vec![0u64; offsets[lists.len()]];
        for (l, rules) in lists.iter().enumerate() {
            let bits = &mut always[offsets[l]..offsets[l + 1]];
            for (r, clauses) in rules.iter().enumerate() {
                if clauses.is_empty() {
                    bits[r / 64] |= 1 << (r % 64);
                    continue;
                }
                let target = u32::try_from(targets.len()).map_err(|e| e.to_string())?;
                let mut ids = Vec::with_capacity(clauses.len());
                for clause in clauses {
                    let next = u32::try_from(clause_targets.len()).map_err(|e| e.to_string())?;
                    let id = *clause_ids.entry(clause).or_insert_with(|| {
                        clause_targets.push(Vec::new());
                        for atom in clause {
                            let a = *atom_ids.entry(atom.as_str()).or_insert_with(|| {
                                patterns.push(atom.as_str());
                                atom_clauses.push(Vec::new());
                                patterns.len() - 1
                            });
                            atom_clauses[a].push(next);
                        }
                        next
                    });
                    ids.push((clause, id));
                }
                let trigger = ids
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, (clause, _))| trigger_rank(clause))
                    .map_or(0, |(i, _)| i);
                clause_targets[ids[trigger].1 as usize].push(target);
                let start = other_clauses.len();
                other_clauses.extend(
                    ids.iter()
                        .enumerate()
                        .filter(|&(i, _)| i != trigger)
                        .map(|(_, &(_, id))| id),
                );
                targets.push(Target {
                    list: u16::try_from(l).map_err(|e| e.to_string())?,
                    rule: u32::try_from(r).map_err(|e| e.to_string())?,
                    others: start..other_clauses.len(),
                });
            }
        }
        let automaton = if patterns.is_empty() {
            None
        } else {
            Some(
                DFA::builder()
                    .match_kind(MatchKind::Standard)
                    .build(&patterns)
                    .map_err(|e| e.to_string())?,
            )
        };
        Ok(Prefilter {
            automaton,
            atom_clauses,
            clause_targets,
            targets,
            other_clauses,
            always,
            offsets,
        })
    }

    /// Number of distinct atoms.
    pub fn atom_count(&self) -> usize {
        self.atom_clauses.len()
    }

    /// Number of rules of `list` that are always tried.
    pub fn always_count(&self, list: usize) -> usize {
        self.always[self.offsets[list]..self.offsets[list + 1]]
            .iter()
            .map(|w| w.count_ones() as usize)
            .sum()
    }

    /// The candidate rules for a user agent already folded with
    /// [`fold_into`].
    pub fn candidates(&self, folded: &str) -> Candidates<'_> {
        let mut bits = self.always.clone();
        if let Some(dfa) = &self.automaton {
            SCRATCH.with(|scratch| {
                let scratch = &mut *scratch.borrow_mut();
                let generation = scratch.next_generation(self.clause_targets.len());
                // Every occurrence of every atom, overlapping: a standard
                // Aho-Corasick automaton's state after a byte holds all the
                // atoms ending there. Walking it directly costs a table
                // lookup per byte (the overlapping-match iterator costs a
                // call per match, and user agents hold dozens of atoms).
                let Ok(mut sid) = dfa.start_state(Anchored::No) else {
                    return;
                };
                for &byte in folded.as_bytes() {
                    sid = dfa.next_state(Anchored::No, sid, byte);
                    if !dfa.is_special(sid) || !dfa.is_match(sid) {
                        continue;
                    }
                    for i in 0..dfa.match_len(sid) {
                        let atom = dfa.match_pattern(sid, i).as_usize();
                        for &c in &self.atom_clauses[atom] {
                            let stamp = &mut scratch.clause_stamp[c as usize];
                            if *stamp != generation {
                                *stamp = generation;
                                scratch.hits.push(c);
                            }
                        }
                    }
                }
                for &c in &scratch.hits {
                    for &t in &self.clause_targets[c as usize] {
                        let target = &self.targets[t as usize];
                        let satisfied = self.other_clauses[target.others.clone()]
                            .iter()
                            .all(|&o| scratch.clause_stamp[o as usize] == generation);
                        if satisfied {
                            let r = target.rule as usize;
                            let word = self.offsets[usize::from(target.list)] + r / 64;
                            bits[word] |= 1 << (r % 64);
                        }
                    }
                }
            });
        }
        Candidates {
            bits,
            offsets: &self.offsets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(pattern: &str, ci: bool) -> Vec<Vec<String>> {
        let hir = regex_syntax::ParserBuilder::new()
            .case_insensitive(ci)
            .build()
            .parse(pattern)
            .unwrap();
        requirement(&hir)
            .into_iter()
            .map(|c| c.into_iter().collect())
            .collect()
    }

    fn cnf(clauses: &[&[&str]]) -> Vec<Vec<String>> {
        clauses
            .iter()
            .map(|c| c.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn literal_runs_become_atoms() {
        assert_eq!(req(r"Chrome/(\d+)\.(\d+)", false), cnf(&[&["chrome/"]]));
        assert_eq!(
            req(r"(?:Kindle|Silk)/(\d+)", false),
            cnf(&[&["kindle/", "silk/"]])
        );
        assert_eq!(req(r"x(\d+)", false), cnf(&[]));
        assert_eq!(
            req(r"Opera Mini(?:/att|)/?(\d+)", false),
            cnf(&[&["opera mini"]])
        );
    }

    #[test]
    fn every_part_of_a_concatenation_is_required() {
        assert_eq!(
            req(r"; *(Nexus \d+) Build", false),
            cnf(&[&[" build"], &["nexus "]])
        );
        assert_eq!(
            req(
                r"; {0,2}(ARIZONA|Grand [^;]+|JOE)(?: Build|\) AppleWebKit)",
                false
            ),
            cnf(&[&[" build", ") applewebkit"], &["arizona", "grand ", "joe"]])
        );
    }

    #[test]
    fn case_insensitive_rules_share_folded_atoms() {
        assert_eq!(req(r"Build/", true), cnf(&[&["build/"]]));
        // The Kelvin sign folds to `k`, on both sides.
        assert_eq!(fold_char('\u{212A}'), 'k');
        assert_eq!(req(r"kindle", true), cnf(&[&["kindle"]]));
    }

    #[test]
    fn small_classes_and_optionals_multiply_out() {
        assert_eq!(
            req(r"[Ww]in(?:dows)? ", false),
            cnf(&[&["win ", "windows "]])
        );
        assert_eq!(req(r"(?:a|)bcd", false), cnf(&[&["bcd"]]));
    }

    #[test]
    fn optional_parts_require_nothing() {
        assert_eq!(req(r"(?:Firefox|)", false), cnf(&[]));
        assert_eq!(req(r"(?:foo)*bar", false), cnf(&[&["bar"]]));
        assert_eq!(req(r"(?:foo|x)bar", false), cnf(&[&["foobar", "xbar"]]));
        assert_eq!(req(r"(?:foo|.)bar", false), cnf(&[&["bar"]]));
        assert_eq!(req(r"(?:foo\d|.)bar", false), cnf(&[&["bar"]]));
    }

    #[test]
    fn candidates_need_every_clause() {
        let c = |atoms: &[&str]| atoms.iter().map(|s| s.to_string()).collect::<Clause>();
        let lists = vec![
            vec![
                vec![c(&["abc"])],
                vec![],
                vec![c(&["abc"]), c(&["def", "ghi"])],
            ],
            vec![vec![c(&["abc", "xyz"])]],
        ];
        let pf = Prefilter::new(&lists).unwrap();
        let got = |ua: &str, l: usize| pf.candidates(ua).iter(l).collect::<Vec<_>>();
        assert_eq!(got("--abc--", 0), vec![0, 1]);
        assert_eq!(got("--abc--", 1), vec![0]);
        assert_eq!(got("-ghi-abc-abc-", 0), vec![0, 1, 2]);
        assert_eq!(got("nothing", 0), vec![1]);
        assert_eq!(got("nothing", 1), Vec::<usize>::new());
    }
}
