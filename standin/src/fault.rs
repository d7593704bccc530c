//! Fault injection: rules that make the stand-in misbehave on purpose.
//!
//! A [`FaultRule`] names a [`Fault`] and, optionally, the instance and the
//! category it applies to and how many times it fires. For each request the
//! first rule that fits the listener (API faults only hit the API, download
//! faults only the download host), the instance and the category applies; its
//! `times` counts down and the rule is removed when it reaches zero.
//!
//! API requests carry an instance (from the path) but no category, so a rule
//! restricted to a category never matches an API request. IAM and metadata
//! requests carry neither, so only unrestricted rules reach them.

use std::time::Duration;

use crate::record::Listener;
use crate::zips::HostileZip;

/// One way of misbehaving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The API answers this status and body, with `Retry-After` if given.
    ApiStatus {
        /// HTTP status code.
        status: u16,
        /// Raw response body (sent as `application/json;charset=UTF-8`).
        body: String,
        /// Value of the `Retry-After` header, if any.
        retry_after: Option<String>,
    },
    /// The API answers 200 with this raw body.
    ApiBody(String),
    /// The API stalls this long, then answers normally.
    ApiDelay(Duration),
    /// The API closes the connection without an answer.
    ApiReset,
    /// The API answers this status with an error body whose `error_msg`
    /// echoes the credentials the request carried (`X-Auth-Token`,
    /// `X-Security-Token`, the AK of `Authorization`), as a careless gateway
    /// might.
    ApiEchoCredentials(u16),
    /// IAM answers this status and raw body to every request (an outage).
    IamStatus {
        /// HTTP status code.
        status: u16,
        /// Raw response body.
        body: String,
    },
    /// The metadata service answers this status and raw body to every
    /// request (an outage).
    MetadataStatus {
        /// HTTP status code.
        status: u16,
        /// Raw response body.
        body: String,
    },
    /// The download host answers this status, body and content type.
    DownloadStatus {
        /// HTTP status code.
        status: u16,
        /// Raw response body.
        body: String,
        /// Value of the `Content-Type` header.
        content_type: String,
    },
    /// The download host answers 200 with these bytes.
    DownloadBody(Vec<u8>),
    /// The download host announces the full certificate's `Content-Length`,
    /// writes half of it and closes the connection.
    DownloadTruncate,
    /// The download host closes the connection without an answer.
    DownloadReset,
    /// The download host stalls this long, then answers normally.
    DownloadDelay(Duration),
    /// The download host answers 200 with this many bytes of PEM-looking
    /// filler, streamed, with a `Content-Length` header.
    DownloadHuge(usize),
    /// Like [`Fault::DownloadHuge`] but with chunked transfer encoding and no
    /// `Content-Length`, so only a streaming size limit can catch it.
    DownloadHugeChunked(usize),
    /// The download host answers 200 with this hostile or broken zip, built
    /// around the slot's certificate.
    DownloadZip(HostileZip),
}

impl Fault {
    /// The listener this fault acts on.
    pub fn listener(&self) -> Listener {
        match self {
            Fault::ApiStatus { .. }
            | Fault::ApiBody(_)
            | Fault::ApiDelay(_)
            | Fault::ApiReset
            | Fault::ApiEchoCredentials(_) => Listener::Api,
            Fault::IamStatus { .. } => Listener::Iam,
            Fault::MetadataStatus { .. } => Listener::Metadata,
            Fault::DownloadStatus { .. }
            | Fault::DownloadBody(_)
            | Fault::DownloadTruncate
            | Fault::DownloadReset
            | Fault::DownloadDelay(_)
            | Fault::DownloadHuge(_)
            | Fault::DownloadHugeChunked(_)
            | Fault::DownloadZip(_) => Listener::Download,
        }
    }
}

/// A fault plus the requests it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    /// Only requests for this instance (`None` = any).
    pub instance: Option<String>,
    /// Only downloads of this category (`None` = any).
    pub category: Option<String>,
    /// What happens.
    pub fault: Fault,
    /// How many matching requests it affects (`None` = forever).
    pub times: Option<u32>,
}

impl FaultRule {
    /// A rule that applies to every matching request, forever.
    pub fn always(fault: Fault) -> FaultRule {
        FaultRule {
            instance: None,
            category: None,
            fault,
            times: None,
        }
    }

    /// A rule that applies to the next matching request only.
    pub fn once(fault: Fault) -> FaultRule {
        FaultRule::times(fault, 1)
    }

    /// A rule that applies to the next `n` matching requests.
    pub fn times(fault: Fault, n: u32) -> FaultRule {
        FaultRule {
            times: Some(n),
            ..FaultRule::always(fault)
        }
    }

    /// Restricts the rule to one instance.
    #[must_use]
    pub fn for_instance(mut self, instance: &str) -> FaultRule {
        self.instance = Some(instance.to_owned());
        self
    }

    /// Restricts the rule to one category (download requests only).
    #[must_use]
    pub fn for_category(mut self, category: &str) -> FaultRule {
        self.category = Some(category.to_owned());
        self
    }

    fn matches(&self, listener: Listener, instance: Option<&str>, category: Option<&str>) -> bool {
        let fits = |want: &Option<String>, have: Option<&str>| match want {
            None => true,
            Some(w) => have == Some(w.as_str()),
        };
        self.fault.listener() == listener
            && self.times != Some(0)
            && fits(&self.instance, instance)
            && fits(&self.category, category)
    }
}

/// Takes the fault that applies to a request, counting the rule down.
pub(crate) fn take(
    rules: &mut Vec<FaultRule>,
    listener: Listener,
    instance: Option<&str>,
    category: Option<&str>,
) -> Option<Fault> {
    let idx = rules
        .iter()
        .position(|r| r.matches(listener, instance, category))?;
    let rule = &mut rules[idx];
    let fault = rule.fault.clone();
    if let Some(n) = rule.times.as_mut() {
        *n = n.saturating_sub(1);
        if *n == 0 {
            rules.remove(idx);
        }
    }
    Some(fault)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_rule_wins_and_counts_down() {
        let mut rules = vec![
            FaultRule::once(Fault::ApiReset).for_instance("a"),
            FaultRule::always(Fault::ApiBody("x".into())),
        ];
        assert_eq!(
            take(&mut rules, Listener::Api, Some("b"), None),
            Some(Fault::ApiBody("x".into()))
        );
        assert_eq!(
            take(&mut rules, Listener::Api, Some("a"), None),
            Some(Fault::ApiReset)
        );
        assert_eq!(rules.len(), 1, "the once-rule is removed after firing");
        assert_eq!(
            take(&mut rules, Listener::Api, Some("a"), None),
            Some(Fault::ApiBody("x".into()))
        );
    }

    #[test]
    fn listener_and_category_must_fit() {
        let mut rules = vec![FaultRule::always(Fault::DownloadReset).for_category("national")];
        assert_eq!(take(&mut rules, Listener::Api, Some("a"), None), None);
        assert_eq!(
            take(
                &mut rules,
                Listener::Download,
                Some("a"),
                Some("international")
            ),
            None
        );
        assert_eq!(
            take(&mut rules, Listener::Download, Some("a"), Some("national")),
            Some(Fault::DownloadReset)
        );
        assert_eq!(rules.len(), 1, "an `always` rule stays");
    }

    #[test]
    fn times_zero_never_fires() {
        let mut rules = vec![FaultRule::times(Fault::ApiReset, 0)];
        assert_eq!(take(&mut rules, Listener::Api, None, None), None);
    }
}
