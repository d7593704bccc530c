//! Taking live secrets out of text that came from the network.
//!
//! A server may echo what it was sent: a gateway quoting the token or the
//! access key it refused, IAM repeating the password. Every text from the
//! network (the API's error code, message and request ID, IAM's and the
//! metadata service's error texts, transport error descriptions) goes
//! through one [`Scrubber`] before it reaches a log line or an error. The
//! scrubber is fed with every live secret of the configured auth method
//! ([`super::auth::Credentials::scrubber`]): the token, the access and
//! secret keys, the security token, the IAM tokens in use, the password and
//! the metadata service's keys.
//!
//! Each occurrence becomes [`Secret::MASK`]; the rest of the text stays, so
//! the user still sees why a request failed. A value shorter than
//! [`WHOLE_WORD_BELOW`] bytes (a test token such as `t`) is masked only where
//! it stands as a whole word: masking every `t` would make the text unreadable
//! and, by the pattern of masks, show what the secret is. Scrubbing comes before any
//! clipping, so a secret is never cut in half and half shown. Pure.

use std::fmt;

use crate::secret::Secret;

/// Values shorter than this are masked only as whole words. Real tokens and
/// keys are far longer (an AK is 20 characters, an SK 40).
pub const WHOLE_WORD_BELOW: usize = 8;

/// A set of secret values to mask in untrusted text.
#[derive(Clone, Default)]
pub struct Scrubber {
    /// Longest first, so a secret that contains another is masked whole.
    secrets: Vec<Secret>,
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scrubber({} secrets)", self.secrets.len())
    }
}

impl Scrubber {
    /// A scrubber for these values (empty ones are ignored).
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Self {
        Scrubber::default().with(secrets)
    }

    /// This scrubber plus more values.
    #[must_use]
    pub fn with(mut self, secrets: impl IntoIterator<Item = Secret>) -> Self {
        self.secrets
            .extend(secrets.into_iter().filter(|s| !s.is_empty()));
        // Longest first; equal values end up side by side for dedup.
        self.secrets
            .sort_by(|a, b| (b.expose().len(), a.expose()).cmp(&(a.expose().len(), b.expose())));
        self.secrets.dedup();
        self
    }

    /// `text` with every occurrence of every secret replaced by the mask.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            let value = s.expose();
            if !out.contains(value) {
                continue;
            }
            out = if value.len() >= WHOLE_WORD_BELOW {
                out.replace(value, Secret::MASK)
            } else {
                replace_whole_words(&out, value)
            };
        }
        out
    }

    /// [`Scrubber::scrub`] over an optional text.
    pub fn scrub_opt(&self, text: Option<String>) -> Option<String> {
        text.map(|t| self.scrub(&t))
    }
}

/// `text` with each occurrence of `word` that no letter, digit, `-` or `_`
/// touches replaced by the mask.
fn replace_whole_words(text: &str, word: &str) -> String {
    let part_of_word =
        |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_');
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    for (at, _) in text.match_indices(word) {
        if at < from {
            continue;
        }
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        if part_of_word(before) || part_of_word(after) {
            continue;
        }
        out.push_str(&text[from..at]);
        out.push_str(Secret::MASK);
        from = at + word.len();
    }
    out.push_str(&text[from..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_secret_is_masked_only_as_a_whole_word() {
        let s = Scrubber::new([Secret::new("t")]);
        assert_eq!(
            s.scrub("cannot connect: connection refused"),
            "cannot connect: connection refused"
        );
        assert_eq!(
            s.scrub("bad token 't' (t)"),
            "bad token '********' (********)"
        );
        assert_eq!(s.scrub("t"), "********");
        let s = Scrubber::new([Secret::new("pw-1")]);
        assert_eq!(s.scrub("pw-12 pw-1 xpw-1"), "pw-12 ******** xpw-1");
    }

    #[test]
    fn every_secret_is_masked_and_the_rest_of_the_text_kept() {
        let s = Scrubber::new([
            Secret::new("AKEXAMPLE"),
            Secret::new(""),
            Secret::new("tok-123"),
            Secret::new("tok-123-longer"),
        ]);
        assert_eq!(
            s.scrub("denied for tok-123-longer and tok-123 (AKEXAMPLE, AKEXAMPLE)"),
            "denied for ******** and ******** (********, ********)"
        );
        assert_eq!(s.scrub("nothing secret"), "nothing secret");
        assert_eq!(Scrubber::default().scrub("as is"), "as is");
        assert!(!format!("{s:?}").contains("AKEXAMPLE"));
    }
}
