//! Why a round failed: the one list of failure reasons.
//!
//! A [`Reason`] is what a round's report says of each failure
//! ([`crate::report::Failure`]), what its log line carries as `reason=`, and,
//! through [`Reason::as_str`], the `reason` label of the
//! `dds_certsync_sync_errors_total` counter ([`crate::metrics`]). The label
//! strings are part of the metrics' contract (alert rules and dashboards
//! name them): a variant may be added, but a string never changes.
//!
//! A leaf: it imports nothing of the crate, so the cloud client can classify
//! its own errors ([`crate::cloud::ApiError::reason`]) and the metrics can
//! list every label without knowing what a round is.

use std::fmt;

/// Why (part of) a round failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The API refused the credentials (HTTP 401 or 403).
    ApiAuth,
    /// The API throttled us (HTTP 429).
    ApiThrottled,
    /// The API failed (HTTP 5xx).
    ApiServerError,
    /// The API refused the request otherwise (another 4xx).
    ApiClientError,
    /// The API answered something unusable.
    ApiBadResponse,
    /// The API did not answer in time.
    ApiTimeout,
    /// The API could not be reached.
    ApiNetwork,
    /// No credentials could be had (a secret file, IAM, the metadata service).
    Credentials,
    /// The API's answer has no link for a configured category.
    ApiMissingCategory,
    /// A certificate download failed.
    Download,
    /// A downloaded certificate failed the checks.
    Verify,
    /// An output could not be read.
    Disk,
    /// An output could not be replaced.
    Write,
    /// A bug: a task of the round failed.
    Internal,
    /// The hook failed.
    Hook,
}

impl Reason {
    /// Every reason, in the order the metrics export them.
    pub const ALL: [Reason; 15] = [
        Reason::ApiAuth,
        Reason::ApiThrottled,
        Reason::ApiServerError,
        Reason::ApiClientError,
        Reason::ApiBadResponse,
        Reason::ApiTimeout,
        Reason::ApiNetwork,
        Reason::Credentials,
        Reason::ApiMissingCategory,
        Reason::Download,
        Reason::Verify,
        Reason::Disk,
        Reason::Write,
        Reason::Internal,
        Reason::Hook,
    ];

    /// The label value: stable, snake_case.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::ApiAuth => "api_auth",
            Reason::ApiThrottled => "api_throttled",
            Reason::ApiServerError => "api_server_error",
            Reason::ApiClientError => "api_client_error",
            Reason::ApiBadResponse => "api_bad_response",
            Reason::ApiTimeout => "api_timeout",
            Reason::ApiNetwork => "api_network",
            Reason::Credentials => "credentials",
            Reason::ApiMissingCategory => "api_missing_category",
            Reason::Download => "download",
            Reason::Verify => "verify",
            Reason::Disk => "disk",
            Reason::Write => "write",
            Reason::Internal => "internal",
            Reason::Hook => "hook",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The label values of [`Reason::ALL`], in the same order.
pub const LABELS: [&str; Reason::ALL.len()] = {
    let mut labels = [""; Reason::ALL.len()];
    let mut i = 0;
    while i < labels.len() {
        labels[i] = Reason::ALL[i].as_str();
        i += 1;
    }
    labels
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_labels_are_the_ones_alert_rules_name() {
        assert_eq!(
            LABELS,
            [
                "api_auth",
                "api_throttled",
                "api_server_error",
                "api_client_error",
                "api_bad_response",
                "api_timeout",
                "api_network",
                "credentials",
                "api_missing_category",
                "download",
                "verify",
                "disk",
                "write",
                "internal",
                "hook",
            ]
        );
        assert_eq!(Reason::Verify.to_string(), "verify");
    }

    #[test]
    fn every_reason_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r), "{r:?} twice");
            // A variant missing from ALL would leave its label undeclared:
            // this match fails to compile when a variant is added.
            match r {
                Reason::ApiAuth
                | Reason::ApiThrottled
                | Reason::ApiServerError
                | Reason::ApiClientError
                | Reason::ApiBadResponse
                | Reason::ApiTimeout
                | Reason::ApiNetwork
                | Reason::Credentials
                | Reason::ApiMissingCategory
                | Reason::Download
                | Reason::Verify
                | Reason::Disk
                | Reason::Write
                | Reason::Internal
                | Reason::Hook => {}
            }
        }
    }
}
