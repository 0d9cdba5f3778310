//! Loading uap-core's `regexes.yaml` into plain rule descriptions.
//!
//! The file ships inside the binary (`include_str!`), with its licence and
//! the upstream commit beside it in `rust/data/uap-core/`. Nothing here
//! compiles a regex: that is [`super::matcher`]'s job, done lazily.

use std::fmt;

use yaml_rust2::{Yaml, YamlLoader};

/// uap-core's `regexes.yaml`, embedded at build time.
pub const REGEXES_YAML: &str = include_str!("../../../data/uap-core/regexes.yaml");

/// The uap-core commit `REGEXES_YAML` was copied from.
pub const UAP_CORE_COMMIT: &str = include_str!("../../../data/uap-core/SOURCE_COMMIT");

/// Which of the three uap-core lists a rule belongs to; it decides what the
/// replacement slots mean and how they are resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    /// `user_agent_parsers`: family, v1..v4.
    UserAgent,
    /// `os_parsers`: os, os_v1..os_v4.
    Os,
    /// `device_parsers`: device, brand, model.
    Device,
}

impl ListKind {
    /// The YAML key of the list.
    pub fn key(self) -> &'static str {
        match self {
            ListKind::UserAgent => "user_agent_parsers",
            ListKind::Os => "os_parsers",
            ListKind::Device => "device_parsers",
        }
    }

    /// The replacement keys, in slot order.
    fn replacement_keys(self) -> &'static [&'static str] {
        match self {
            ListKind::UserAgent => &[
                "family_replacement",
                "v1_replacement",
                "v2_replacement",
                "v3_replacement",
                "v4_replacement",
            ],
            ListKind::Os => &[
                "os_replacement",
                "os_v1_replacement",
                "os_v2_replacement",
                "os_v3_replacement",
                "os_v4_replacement",
            ],
            ListKind::Device => &[
                "device_replacement",
                "brand_replacement",
                "model_replacement",
            ],
        }
    }
}

/// One entry of a uap-core list, as written in the YAML.
#[derive(Clone, Debug)]
pub struct RuleDef {
    /// The regular expression, as written (Python `re` syntax).
    pub regex: String,
    /// `regex_flag: 'i'`: match case-insensitively.
    pub case_insensitive: bool,
    /// Replacement strings by slot (see [`ListKind`]); `None` when absent.
    pub replacements: [Option<String>; 5],
}

/// The three lists of a `regexes.yaml`.
#[derive(Clone, Debug)]
pub struct RegexesFile {
    pub user_agent: Vec<RuleDef>,
    pub os: Vec<RuleDef>,
    pub device: Vec<RuleDef>,
}

/// A `regexes.yaml` that does not have the expected shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError(pub String);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid regexes.yaml: {}", self.0)
    }
}

impl std::error::Error for LoadError {}

/// Parses a `regexes.yaml`. Unknown keys are refused, so that an upstream
/// update adding a new directive fails the tests instead of being ignored.
pub fn load(yaml: &str) -> Result<RegexesFile, LoadError> {
    let docs = YamlLoader::load_from_str(yaml).map_err(|e| LoadError(e.to_string()))?;
    let doc = docs
        .first()
        .ok_or_else(|| LoadError("empty document".into()))?;
    Ok(RegexesFile {
        user_agent: load_list(doc, ListKind::UserAgent)?,
        os: load_list(doc, ListKind::Os)?,
        device: load_list(doc, ListKind::Device)?,
    })
}

fn load_list(doc: &Yaml, kind: ListKind) -> Result<Vec<RuleDef>, LoadError> {
    let items = doc[kind.key()]
        .as_vec()
        .ok_or_else(|| LoadError(format!("`{}` is missing or not a list", kind.key())))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            load_rule(item, kind).map_err(|e| LoadError(format!("{}[{i}]: {}", kind.key(), e.0)))
        })
        .collect()
}

fn load_rule(item: &Yaml, kind: ListKind) -> Result<RuleDef, LoadError> {
    let map = item
        .as_hash()
        .ok_or_else(|| LoadError("not a mapping".into()))?;
    let mut regex = None;
    let mut case_insensitive = false;
    let mut replacements: [Option<String>; 5] = Default::default();
    for (key, value) in map {
        let key = key
            .as_str()
            .ok_or_else(|| LoadError("non-string key".into()))?;
        let value = scalar(value).map_err(|e| LoadError(format!("`{key}`: {}", e.0)))?;
        match key {
            "regex" => regex = value,
            "regex_flag" => match value.as_deref() {
                Some("i") => case_insensitive = true,
                None | Some("") => {}
                Some(other) => return Err(LoadError(format!("unknown regex_flag {other:?}"))),
            },
            _ => {
                let slot = kind
                    .replacement_keys()
                    .iter()
                    .position(|k| *k == key)
                    .ok_or_else(|| LoadError(format!("unknown key `{key}`")))?;
                replacements[slot] = value;
            }
        }
    }
    let regex = regex.ok_or_else(|| LoadError("no `regex`".into()))?;
    Ok(RuleDef {
        regex,
        case_insensitive,
        replacements,
    })
}

/// A scalar as text; `null` (or an empty value) is `None`.
fn scalar(value: &Yaml) -> Result<Option<String>, LoadError> {
    match value {
        Yaml::String(s) | Yaml::Real(s) => Ok(Some(s.clone())),
        Yaml::Integer(i) => Ok(Some(i.to_string())),
        Yaml::Boolean(b) => Ok(Some(b.to_string())),
        Yaml::Null => Ok(None),
        other => Err(LoadError(format!("not a scalar: {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_file_loads() {
        let file = load(REGEXES_YAML).unwrap();
        assert!(file.user_agent.len() > 400, "{}", file.user_agent.len());
        assert!(file.os.len() > 100);
        assert!(file.device.len() > 500);
        assert!(file.device.iter().any(|r| r.case_insensitive));
        assert_eq!(UAP_CORE_COMMIT.trim().len(), 40);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = load("user_agent_parsers:\n  - regex: 'a'\n    colour: 'red'\nos_parsers: []\ndevice_parsers: []\n")
            .unwrap_err();
        assert!(err.0.contains("colour"), "{err}");
    }

    #[test]
    fn replacements_go_to_their_slot() {
        let file = load(
            "user_agent_parsers: []\nos_parsers:\n  - regex: 'Win(95)'\n    os_replacement: 'Windows $1'\n    os_v2_replacement: '3'\ndevice_parsers:\n  - regex: 'x'\n    regex_flag: 'i'\n    model_replacement: 'M'\n",
        )
        .unwrap();
        assert_eq!(file.os[0].replacements[0].as_deref(), Some("Windows $1"));
        assert_eq!(file.os[0].replacements[1], None);
        assert_eq!(file.os[0].replacements[2].as_deref(), Some("3"));
        assert!(file.device[0].case_insensitive);
        assert_eq!(file.device[0].replacements[2].as_deref(), Some("M"));
    }
}
