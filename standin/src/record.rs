//! Request recording: every request seen on any listener, in order.

use serde::Serialize;

/// Which listener saw a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Listener {
    /// The DDS API endpoint (and the `/__standin/` admin API).
    Api,
    /// The certificate download host.
    Download,
    /// The IAM endpoint (`POST /v3/auth/tokens`).
    Iam,
    /// The ECS metadata service (plain HTTP).
    Metadata,
}

/// One request as the stand-in saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recorded {
    /// Which listener received it.
    pub listener: Listener,
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Path including the query string.
    pub path: String,
    /// Header names (lowercase) and values, in arrival order. Values that are
    /// not valid UTF-8 are converted lossily.
    pub headers: Vec<(String, String)>,
}

impl Recorded {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the request carried a header, by case-insensitive name.
    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }
}
