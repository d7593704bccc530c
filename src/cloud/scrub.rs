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
//! the user still sees why a request failed. Scrubbing comes before any
//! clipping, so a secret is never cut in half and half shown. Pure.

use std::fmt;

use crate::secret::Secret;

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
            if out.contains(s.expose()) {
                out = out.replace(s.expose(), Secret::MASK);
            }
        }
        out
    }

    /// [`Scrubber::scrub`] over an optional text.
    pub fn scrub_opt(&self, text: Option<String>) -> Option<String> {
        text.map(|t| self.scrub(&t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
