//! A masking wrapper for credentials.
//!
//! Every secret the daemon handles (IAM tokens, secret keys, passwords,
//! security tokens) lives in a [`Secret`]. Its `Debug` and `Display` print a
//! fixed mask, so a secret cannot reach a log line or an error message by
//! accident: the only way to the bytes is the explicitly named
//! [`Secret::expose`], which is called where a request is built and nowhere
//! else.

use std::fmt;

use serde::Deserialize;

/// A string that never prints itself.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The text printed in place of any secret.
    pub const MASK: &'static str = "********";

    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself. Call only to put it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", Self::MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_mask_the_value() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s}"), Secret::MASK);
        assert_eq!(format!("{s:?}"), "Secret(********)");
        assert!(!format!("{s:#?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn masked_inside_derived_debug() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            token: Secret,
        }
        let h = Holder {
            token: Secret::new("tok-123"),
        };
        assert!(!format!("{h:?}").contains("tok-123"));
    }
}
