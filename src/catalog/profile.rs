//! The official SDKs' credentials file (`~/.huaweicloud/credentials`).
//!
//! An INI file; only the `[basic]` section matters here, with the keys the
//! SDKs read: `ak`, `sk`, `security_token`, `project_id`, `iam_endpoint`.
//! Parsing is pure ([`parse_basic`]); finding and reading the file is done by
//! the config loader. Secret values are wrapped in [`Secret`] as soon as they
//! are read, so the parsed profile can be logged or debugged safely.

use std::path::{Path, PathBuf};

use crate::secret::Secret;

/// The environment variable naming the credentials file.
pub const FILE_VAR: &str = "HUAWEICLOUD_SDK_CREDENTIALS_FILE";

/// The `[basic]` section of a credentials file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub ak: Option<Secret>,
    pub sk: Option<Secret>,
    pub security_token: Option<Secret>,
    pub project_id: Option<String>,
    pub iam_endpoint: Option<String>,
}

/// Parses the `[basic]` section of an INI text. `Ok(None)` when the file has
/// no such section. Section and key names are matched case-insensitively;
/// `;` and `#` start comment lines; values may be wrapped in quotes. A line
/// that is neither a section, a comment nor `key = value` is an error naming
/// its line number (never its content, which may hold a secret).
pub fn parse_basic(text: &str) -> Result<Option<Profile>, String> {
    let mut in_basic = false;
    let mut found = false;
    let mut profile = Profile::default();
    for (n, raw_line) in text.lines().enumerate() {
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']') else {
                return Err(format!("line {}: unterminated section header", n + 1));
            };
            in_basic = name.trim().eq_ignore_ascii_case("basic");
            found |= in_basic;
            continue;
        }
        let Some((key, value)) = line.split_once('=').or_else(|| line.split_once(':')) else {
            return Err(format!("line {}: expected key = value", n + 1));
        };
        if !in_basic {
            continue;
        }
        let value = unquote(value.trim());
        if value.is_empty() {
            continue;
        }
        match key.trim().to_ascii_lowercase().as_str() {
            "ak" => profile.ak = Some(Secret::new(value)),
            "sk" => profile.sk = Some(Secret::new(value)),
            "security_token" => profile.security_token = Some(Secret::new(value)),
            "project_id" => profile.project_id = Some(value.to_string()),
            "iam_endpoint" => profile.iam_endpoint = Some(value.to_string()),
            _ => {}
        }
    }
    Ok(found.then_some(profile))
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

/// Where the SDKs look for the file: `$HUAWEICLOUD_SDK_CREDENTIALS_FILE`,
/// else `$HOME/.huaweicloud/credentials`. `None` when neither is set.
pub fn default_path(file_var: Option<&str>, home: Option<&Path>) -> Option<PathBuf> {
    match file_var.filter(|v| !v.is_empty()) {
        Some(v) => Some(PathBuf::from(v)),
        None => home
            .filter(|h| !h.as_os_str().is_empty())
            .map(|h| h.join(".huaweicloud").join("credentials")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_basic_section_only() {
        let text = "\
# comment
[other]
ak = not-this
[basic]
ak = AKEXAMPLE
SK = \"sk-secret\"
security_token = tok
project_id = p-1
iam_endpoint = https://iam.example.com
unknown_key = x

[other2]
sk = not-this-either
";
        let p = parse_basic(text).unwrap().unwrap();
        assert_eq!(p.ak.unwrap().expose(), "AKEXAMPLE");
        assert_eq!(p.sk.unwrap().expose(), "sk-secret");
        assert_eq!(p.security_token.unwrap().expose(), "tok");
        assert_eq!(p.project_id.as_deref(), Some("p-1"));
        assert_eq!(p.iam_endpoint.as_deref(), Some("https://iam.example.com"));
    }

    #[test]
    fn missing_section_and_broken_lines() {
        assert_eq!(parse_basic("[default]\nak = x\n"), Ok(None));
        assert_eq!(parse_basic(""), Ok(None));
        let e = parse_basic("[basic]\nak = x\nsk-is-secret-no-equals\n").unwrap_err();
        assert!(e.contains("line 3"), "{e}");
        assert!(!e.contains("sk-is-secret"), "{e}");
        assert!(parse_basic("[basic\n").is_err());
    }

    #[test]
    fn debug_masks_the_secrets() {
        let p = parse_basic("[basic]\nak=AK1\nsk=SK-very-secret\n")
            .unwrap()
            .unwrap();
        let d = format!("{p:?}");
        assert!(!d.contains("SK-very-secret") && !d.contains("AK1"), "{d}");
    }

    #[test]
    fn path_prefers_the_variable() {
        assert_eq!(
            default_path(Some("/x/creds"), Some(Path::new("/home/u"))),
            Some(PathBuf::from("/x/creds"))
        );
        assert_eq!(
            default_path(None, Some(Path::new("/home/u"))),
            Some(PathBuf::from("/home/u/.huaweicloud/credentials"))
        );
        assert_eq!(default_path(Some(""), None), None);
    }
}
