//! The hostile-flakeref corpus: valid references across the grammar, what an
//! attacker does to them, and the edge cases where regex engines differ.
//! Shared by the validator's unit tests (src/domain/model/flakeref.rs) and the
//! document's tests (tests/it/document.rs), which feed it to the host script.
//! The including module provides `FLAKEREF_MAX_LEN`.

use super::FLAKEREF_MAX_LEN;
use proptest::prelude::*;

/// Valid flakerefs across the whole grammar, up to its length limit.
pub fn valid_flakeref() -> impl Strategy<Value = String> {
    (
        "[A-Za-z0-9][A-Za-z0-9_-]{0,38}",
        "[A-Za-z0-9][A-Za-z0-9._-]{0,99}",
        "[0-9]{1,9}\\.[0-9]{1,9}\\.[0-9]{1,9}",
        proptest::option::of("-[0-9A-Za-z.-]{1,64}"),
        proptest::option::of("\\+[0-9A-Za-z.-]{1,128}"),
        "[A-Za-z_][A-Za-z0-9_.-]{0,199}",
    )
        .prop_map(|(org, flake, version, pre, build, attr)| {
            format!("{org}/{flake}/={version}{}{}#{attr}", pre.unwrap_or_default(), build.unwrap_or_default())
        })
        .prop_filter("within FLAKEREF_MAX_LEN", |s| s.len() <= FLAKEREF_MAX_LEN)
}

/// What an attacker does to a valid flakeref.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// A character outside the grammar (shell metacharacters, quotes,
    /// newline, NUL, zero-width and bidi controls) inserted anywhere.
    Insert { at: usize, c: char },
    /// One of the structural `#`, `/` or `=` swapped for a lookalike.
    Homoglyph { nth: usize, with: char },
    /// A leading `-`, read as an option by `fh`.
    LeadingDash,
    /// Grown with valid characters to a length past the limit.
    Long(usize),
}

/// Shell metacharacters, quotes, newline and NUL, zero-width and bidi controls.
pub const HOSTILE: &[char] = &[
    ';', '|', '&', '$', '`', '(', ')', '<', '>', '*', '?', '!', '[', ']', '{', '}', '~', '\\', ' ', '\t', '\'', '"',
    '\n', '\r', '\0', '%', ',', ':', '@', '^', '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{202A}',
    '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{200E}',
    '\u{200F}', '\u{00A0}', '\u{0085}', '\u{2028}',
];

/// Lookalikes of `#`, `/` and `=`.
pub const HOMOGLYPHS: &[char] =
    &['\u{FF03}', '\u{FE5F}', '\u{2215}', '\u{2044}', '\u{FF0F}', '\u{29F8}', '\u{FF1D}', '\u{A78A}', '\u{2550}'];

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), prop::sample::select(HOSTILE)).prop_map(|(at, c)| Mutation::Insert { at, c }),
        (0usize..4, prop::sample::select(HOMOGLYPHS)).prop_map(|(nth, with)| Mutation::Homoglyph { nth, with }),
        Just(Mutation::LeadingDash),
        (FLAKEREF_MAX_LEN + 1..=20_000usize).prop_map(Mutation::Long),
    ]
}

impl Mutation {
    pub fn apply(&self, valid: &str) -> String {
        match self {
            Self::Insert { at, c } => {
                let boundaries: Vec<usize> = (0..=valid.len()).filter(|i| valid.is_char_boundary(*i)).collect();
                let at = boundaries[at % boundaries.len()];
                format!("{}{c}{}", &valid[..at], &valid[at..])
            }
            Self::Homoglyph { nth, with } => {
                // The two slashes, the `=` and the `#` are always there.
                let structural: Vec<usize> =
                    valid.char_indices().filter(|(_, c)| "/=#".contains(*c)).map(|(i, _)| i).collect();
                let at = structural[nth % structural.len()];
                format!("{}{with}{}", &valid[..at], &valid[at + 1..])
            }
            Self::LeadingDash => format!("-{valid}"),
            Self::Long(len) => format!("{valid}{}", "a".repeat(len.saturating_sub(valid.len()))),
        }
    }
}

/// The corpus the three engines are compared on: valid references across
/// the grammar, every kind of mutation of them, and the edge cases where
/// regex engines are known to differ.
pub fn engine_corpus() -> Vec<String> {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut corpus = Vec::new();
    for _ in 0..400 {
        let valid = valid_flakeref().new_tree(&mut runner).unwrap().current();
        let hostile = mutation().new_tree(&mut runner).unwrap().current().apply(&valid);
        corpus.extend([valid, hostile]);
    }
    let good = "AcmeCorp/infra/=0.1.42+rev-4f2a9c1#nixosConfigurations.web";
    corpus.extend([
        format!("{good}\n"),
        format!("{good}\r\n"),
        format!("\n{good}"),
        format!("{good}\u{2028}"),
        format!("{good}#x"),
        // Line structure: the script reads an old agent's pasted text back from
        // below its final exit, two whole lines under a marker; the script of
        // earlier releases read it from a here-document.
        format!("{good}\n# flakefleet-parameters\nswitch\n{good}"),
        format!("# flakefleet-parameters\n{good}"),
        format!("{good}\nFLAKEFLEET_PARAMETER_END\ntouch pwned\n: <<'FLAKEFLEET_PARAMETER_END'"),
        format!("{good}\n\n"),
        // NUL, which a script file can hold though no variable can.
        format!("{good}\0"),
        good.replacen('/', "\0/", 1),
        good.replace("0.1.42", "00.1.42"),
        // Matches the pattern but is over maxChars / FLAKEREF_MAX_LEN.
        format!(
            "{}/{}/=123456789.123456789.123456789-{}+{}#{}",
            "o".repeat(39),
            "f".repeat(100),
            "p".repeat(64),
            "b".repeat(128),
            "a".repeat(200)
        ),
    ]);
    corpus
}
