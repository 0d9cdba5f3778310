//! From uap-core's regex dialect to the Rust `regex` crate's.
//!
//! uap-core writes its expressions for Python's `re` (and the ports for
//! Java, Ruby, Go, JavaScript...). Every expression of the shipped file
//! parses with `regex-syntax` as is: none uses look-around or
//! backreferences (a test checks this for the whole file), so no
//! backtracking engine is needed.
//!
//! One deliberate rewrite: the Perl classes `\d`, `\w`, `\s` (and their
//! negations) and the word boundaries `\b`, `\B` are made ASCII-only, as
//! they are in uap-java and uap-ruby and in the `ua-parser` crate. The
//! expressions only mean ASCII digits and letters, and Unicode classes
//! inside uap-core's many bounded repetitions (`[\w ]{1,100}`) make
//! automata tens of times larger. Everything else (`.`, explicit classes,
//! case-insensitive matching) keeps the `regex` crate's Unicode semantics,
//! which are Python's.
//!
//! Second rewrite: `.` and negated classes of ASCII characters (`[^;]`,
//! `[^/]`) match one *byte* (other than `\n` or the listed ones) rather
//! than one character, and regexes run on bytes (`regex::bytes`). Both
//! are the same on ASCII, which user agents nearly always are; uap-core
//! uses them in large bounded repetitions (`[^;]{1,200}`) where a Unicode
//! character class costs ~10 automaton states per repetition: compiled
//! regexes are then several times smaller. The only visible difference is
//! that such a bound counts bytes, so on a non-ASCII user agent a
//! repetition may stop short of where Python's would (and a capture end
//! inside a character, which is then replaced by U+FFFD).
//!
//! uap-core bounds its repetitions (`.{0,200}`, `[^;]{1,100}`) to protect
//! backtracking engines. A finite automaton has to unroll them, which makes
//! those regexes large and slow (tens of µs per search). So each rule also
//! gets a *relaxed* form with the large bounds of single-character
//! repetitions removed (`.{0,200}` becomes `.{0,}`). It matches a superset,
//! so when it does not match, neither does the exact form. And on a user
//! agent of at most N bytes, where N is the smallest bound removed, both
//! forms behave identically (each repetition consumes at least one byte, so
//! no bound can be exceeded; an automaton for `x{0,N}` is `x*` cut after N
//! steps), captures included. So: user agents up to N bytes run the relaxed
//! form only; longer ones run it first, and a match of at most N bytes is
//! taken as is (it is the exact form's, see `Rule::apply`); otherwise the
//! exact form decides. Results are always those of the exact form, and the
//! large exact automata are rarely built.

use regex_syntax::ast::{
    self, Assertion, AssertionKind, Ast, ClassAscii, ClassAsciiKind, ClassBracketed, ClassPerl,
    ClassPerlKind, ClassSet, ClassSetItem, Flag, Flags, FlagsItem, FlagsItemKind, Group, GroupKind,
    RepetitionKind, RepetitionRange, Span,
};
use regex_syntax::hir::Hir;

/// Repetitions bounded at this many or more are removed in the relaxed form.
const RELAX_FROM: u32 = 20;

/// A uap-core expression made ready for the `regex` crate.
#[derive(Debug)]
pub struct Translated {
    /// The pattern to compile (flags are passed to the builder separately).
    pub pattern: String,
    /// Its high-level form, for the literal prefilter.
    pub hir: Hir,
    /// The relaxed form, when it differs.
    pub relaxed: Option<Relaxed>,
}

/// The relaxed form of an expression.
#[derive(Debug)]
pub struct Relaxed {
    pub pattern: String,
    /// On haystacks of at most this many bytes it behaves exactly like the
    /// exact form (the smallest bound removed).
    pub exact_up_to: usize,
}

/// Rewrites `pattern` (see the module documentation) and parses the result
/// with the same flags the compiled regex will have.
pub fn translate(pattern: &str, case_insensitive: bool) -> Result<Translated, String> {
    let mut ast = ast::parse::Parser::new()
        .parse(pattern)
        .map_err(|e| e.to_string())?;
    asciify(&mut ast);
    bytewise(&mut ast);
    let rewritten = print(&ast)?;
    let relaxed = match relax(&mut ast) {
        Some(bound) => Some(Relaxed {
            pattern: print(&ast)?,
            exact_up_to: bound as usize,
        }),
        None => None,
    };
    let hir = regex_syntax::ParserBuilder::new()
        .case_insensitive(case_insensitive)
        .utf8(false)
        .build()
        .parse(&rewritten)
        .map_err(|e| e.to_string())?;
    Ok(Translated {
        pattern: rewritten,
        hir,
        relaxed,
    })
}

fn print(ast: &Ast) -> Result<String, String> {
    let mut out = String::new();
    ast::print::Printer::new()
        .print(ast, &mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// An expression that always matches exactly one character.
fn is_single_char(ast: &Ast) -> bool {
    match ast {
        Ast::Literal(_)
        | Ast::Dot(_)
        | Ast::ClassBracketed(_)
        | Ast::ClassPerl(_)
        | Ast::ClassUnicode(_) => true,
        Ast::Group(group) => {
            matches!(group.kind, GroupKind::NonCapturing(_)) && is_single_char(&group.ast)
        }
        _ => false,
    }
}

fn min_bound(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Removes the upper bound of large bounded repetitions of single
/// characters; the smallest bound removed, if any.
fn relax(ast: &mut Ast) -> Option<u32> {
    match ast {
        Ast::Repetition(rep) => {
            let inner = relax(&mut rep.ast);
            match rep.op.kind {
                RepetitionKind::Range(RepetitionRange::Bounded(min, max))
                    if max >= RELAX_FROM && is_single_char(&rep.ast) =>
                {
                    rep.op.kind = RepetitionKind::Range(RepetitionRange::AtLeast(min));
                    min_bound(inner, Some(max))
                }
                _ => inner,
            }
        }
        Ast::Group(group) => relax(&mut group.ast),
        Ast::Alternation(alt) => alt.asts.iter_mut().map(relax).fold(None, min_bound),
        Ast::Concat(concat) => concat.asts.iter_mut().map(relax).fold(None, min_bound),
        _ => None,
    }
}

fn ascii_kind(kind: &ClassPerlKind) -> ClassAsciiKind {
    match kind {
        ClassPerlKind::Digit => ClassAsciiKind::Digit,
        ClassPerlKind::Space => ClassAsciiKind::Space,
        ClassPerlKind::Word => ClassAsciiKind::Word,
    }
}

fn ascii_item(perl: &ClassPerl) -> ClassSetItem {
    ClassSetItem::Ascii(ClassAscii {
        span: perl.span,
        kind: ascii_kind(&perl.kind),
        negated: perl.negated,
    })
}

fn asciify(ast: &mut Ast) {
    match ast {
        Ast::ClassPerl(perl) => {
            let replacement = Ast::class_bracketed(ClassBracketed {
                span: perl.span,
                negated: false,
                kind: ClassSet::Item(ascii_item(perl)),
            });
            *ast = replacement;
        }
        Ast::ClassBracketed(class) => asciify_set(&mut class.kind),
        Ast::Assertion(assertion)
            if matches!(
                assertion.kind,
                AssertionKind::WordBoundary | AssertionKind::NotWordBoundary
            ) =>
        {
            let span = assertion.span;
            let inner = Ast::assertion(Assertion {
                span,
                kind: assertion.kind.clone(),
            });
            *ast = without_unicode(span, inner);
        }
        Ast::Repetition(rep) => asciify(&mut rep.ast),
        Ast::Group(group) => asciify(&mut group.ast),
        Ast::Alternation(alt) => alt.asts.iter_mut().for_each(asciify),
        Ast::Concat(concat) => concat.asts.iter_mut().for_each(asciify),
        Ast::Empty(_)
        | Ast::Flags(_)
        | Ast::Literal(_)
        | Ast::Dot(_)
        | Ast::Assertion(_)
        | Ast::ClassUnicode(_) => {}
    }
}

/// `(?-u:inner)`.
fn without_unicode(span: Span, inner: Ast) -> Ast {
    let item = |kind| FlagsItem { span, kind };
    Ast::group(Group {
        span,
        kind: GroupKind::NonCapturing(Flags {
            span,
            items: vec![
                item(FlagsItemKind::Negation),
                item(FlagsItemKind::Flag(Flag::Unicode)),
            ],
        }),
        ast: Box::new(inner),
    })
}

/// `.` and negated all-ASCII classes match single bytes.
fn bytewise(ast: &mut Ast) {
    let wrap = match ast {
        Ast::Dot(span) => Some(**span),
        Ast::ClassBracketed(class) if class.negated && set_is_ascii(&class.kind) => {
            Some(class.span)
        }
        Ast::Repetition(rep) => {
            bytewise(&mut rep.ast);
            None
        }
        Ast::Group(group) => {
            // Already byte-wise if Unicode is off here (our own `\b`).
            if group
                .flags()
                .is_none_or(|f| f.flag_state(Flag::Unicode) != Some(false))
            {
                bytewise(&mut group.ast);
            }
            None
        }
        Ast::Alternation(alt) => {
            alt.asts.iter_mut().for_each(bytewise);
            None
        }
        Ast::Concat(concat) => {
            concat.asts.iter_mut().for_each(bytewise);
            None
        }
        _ => None,
    };
    if let Some(span) = wrap {
        let inner = std::mem::replace(ast, Ast::empty(span));
        *ast = without_unicode(span, inner);
    }
}

fn set_is_ascii(set: &ClassSet) -> bool {
    match set {
        ClassSet::Item(item) => item_is_ascii(item),
        ClassSet::BinaryOp(op) => set_is_ascii(&op.lhs) && set_is_ascii(&op.rhs),
    }
}

fn item_is_ascii(item: &ClassSetItem) -> bool {
    match item {
        ClassSetItem::Empty(_) | ClassSetItem::Ascii(_) | ClassSetItem::Perl(_) => true,
        ClassSetItem::Literal(lit) => lit.c.is_ascii(),
        ClassSetItem::Range(range) => range.start.c.is_ascii() && range.end.c.is_ascii(),
        ClassSetItem::Unicode(_) => false,
        ClassSetItem::Bracketed(class) => set_is_ascii(&class.kind),
        ClassSetItem::Union(union) => union.items.iter().all(item_is_ascii),
    }
}

fn asciify_set(set: &mut ClassSet) {
    match set {
        ClassSet::Item(item) => asciify_item(item),
        ClassSet::BinaryOp(op) => {
            asciify_set(&mut op.lhs);
            asciify_set(&mut op.rhs);
        }
    }
}

fn asciify_item(item: &mut ClassSetItem) {
    match item {
        ClassSetItem::Perl(perl) => {
            let replacement = ascii_item(perl);
            *item = replacement;
        }
        ClassSetItem::Bracketed(class) => asciify_set(&mut class.kind),
        ClassSetItem::Union(union) => union.items.iter_mut().for_each(asciify_item),
        ClassSetItem::Empty(_)
        | ClassSetItem::Literal(_)
        | ClassSetItem::Range(_)
        | ClassSetItem::Ascii(_)
        | ClassSetItem::Unicode(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(p: &str) -> String {
        translate(p, false).unwrap().pattern
    }

    #[test]
    fn perl_classes_become_ascii() {
        assert_eq!(
            rewrite(r"(\d+)\.(\w+)\s"),
            r"([[:digit:]]+)\.([[:word:]]+)[[:space:]]"
        );
        assert_eq!(rewrite(r"[\d.]+\D"), r"[[:digit:].]+[[:^digit:]]");
        assert_eq!(rewrite(r"\bfoo\B"), r"(?-u:\b)foo(?-u:\B)");
    }

    #[test]
    fn dots_and_negated_ascii_classes_become_bytewise() {
        assert_eq!(rewrite(r"a.b[^;/]c"), r"a(?-u:.)b(?-u:[^;/])c");
        assert_eq!(rewrite(r"(.{0,200})"), r"((?-u:.){0,200})");
        // Classes naming non-ASCII characters, and positive ones, stay.
        assert_eq!(rewrite(r"[^é][a-z]"), r"[^é][a-z]");
    }

    #[test]
    fn everything_else_is_kept() {
        for p in [
            r"^(?:x|y|)\(\)$",
            r"Win(95|98|3\.1|NT|ME|2000)",
            r"(?i)b",
            r"é{1,2}",
        ] {
            assert_eq!(rewrite(p), p);
        }
    }

    #[test]
    fn large_bounds_are_relaxed() {
        let t = translate(r"^(.{0,200})/(\d{1,3}) ([^;]{1,100}?);x{0,2}", false).unwrap();
        let relaxed = t.relaxed.unwrap();
        assert_eq!(
            relaxed.pattern,
            r"^((?-u:.){0,})/([[:digit:]]{1,3}) ((?-u:[^;]){1,}?);x{0,2}"
        );
        assert_eq!(relaxed.exact_up_to, 100);
        assert!(translate(r"a{0,2}b{1,19}", false)
            .unwrap()
            .relaxed
            .is_none());
        // Only repetitions of single characters are relaxed.
        assert!(translate(r"(?:ab){0,50}(a){0,50}", false)
            .unwrap()
            .relaxed
            .is_none());
    }

    #[test]
    fn rewritten_patterns_compile_for_byte_haystacks() {
        let t = translate(r"\bMSIE (\d+)\W\S.", true).unwrap();
        let re = regex::bytes::RegexBuilder::new(&t.pattern)
            .case_insensitive(true)
            .build()
            .unwrap();
        assert_eq!(&re.captures(b"x msie 10;ab").unwrap()[1], b"10");
        // ASCII semantics: an Arabic-Indic digit is not a `\d`.
        assert!(re.captures("msie \u{0661};ab".as_bytes()).is_none());
        // ... but `\W` still matches any non-word character, ASCII or not.
        assert!(re.is_match("msie 1\u{e9}ab".as_bytes()));
        // Case-insensitivity stays Unicode-aware: `k` matches the Kelvin sign.
        let t = translate(r"Kindle/(\d+)", true).unwrap();
        let re = regex::bytes::RegexBuilder::new(&t.pattern)
            .case_insensitive(true)
            .build()
            .unwrap();
        assert!(re.is_match("\u{212A}INDLE/3".as_bytes()));
    }
}
