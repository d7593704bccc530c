//! Huawei Cloud's catalogue, as the official SDKs publish it: the database
//! services whose SSL CA the daemon can fetch (their config names, the
//! certificate categories each serves, the endpoint of each region), the
//! regions and endpoints of IAM and DDS, and the SDK's credentials profile
//! file's format. Pure data and pure functions: no I/O (the config loader
//! reads the profile file and hands its text to [`profile::parse_basic`]).
//!
//! A leaf: both the config (which checks names, categories and regions
//! against it) and the cloud client (which adds each service's API call in
//! [`crate::cloud::service`]) import it; it imports neither.

pub mod endpoint;
pub mod profile;
mod regions;

use std::fmt;

use regions::{DCS, DDS, GEMINIDB, OPENGAUSS, RDS};

/// The two certificate categories (DDS and RDS serve both; the other
/// services only `international`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// The standard certificate, used by ordinary MongoDB drivers.
    International,
    /// The SM-series (SM2/SM3) certificate.
    National,
}

impl Category {
    pub const ALL: [Category; 2] = [Category::International, Category::National];

    /// The name the API and the config use.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::International => "international",
            Category::National => "national",
        }
    }

    /// The category a name stands for (exact, lower case), as
    /// [`Service::from_name`].
    pub fn from_name(name: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Huawei Cloud database service with an SSL CA download API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// Document Database Service (MongoDB-compatible).
    Dds,
    /// Relational Database Service (MySQL, PostgreSQL, SQL Server).
    Rds,
    /// GeminiDB (GaussDB NoSQL: Redis, Cassandra, …).
    GeminiDb,
    /// GaussDB (openGauss).
    OpenGauss,
    /// Distributed Cache Service (Redis).
    Dcs,
}

/// What the catalogue says of one service.
pub struct Info {
    /// The name the config uses (`service = "…"`).
    pub name: &'static str,
    /// The name people know it by, for messages.
    pub display: &'static str,
    /// `(region, endpoint)` rows, from the SDK's region file.
    pub regions: &'static [(&'static str, &'static str)],
    /// The categories the service serves.
    pub categories: &'static [Category],
}

/// The catalogue, in the order of [`Service::ALL`].
const INFO: [Info; 5] = [
    Info {
        name: "dds",
        display: "DDS",
        regions: DDS,
        categories: &[Category::International, Category::National],
    },
    Info {
        name: "rds",
        display: "RDS",
        regions: RDS,
        categories: &[Category::International, Category::National],
    },
    Info {
        name: "geminidb",
        display: "GeminiDB",
        regions: GEMINIDB,
        categories: &[Category::International],
    },
    Info {
        name: "opengauss",
        display: "GaussDB (openGauss)",
        regions: OPENGAUSS,
        categories: &[Category::International],
    },
    Info {
        name: "dcs",
        display: "DCS",
        regions: DCS,
        categories: &[Category::International],
    },
];

impl Service {
    /// Every service, in table order.
    pub const ALL: [Service; 5] = [
        Service::Dds,
        Service::Rds,
        Service::GeminiDb,
        Service::OpenGauss,
        Service::Dcs,
    ];

    /// The service's row of the catalogue.
    pub fn info(self) -> &'static Info {
        &INFO[self as usize]
    }

    /// The name the config uses.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The name people know it by, for messages.
    pub fn display(self) -> &'static str {
        self.info().display
    }

    /// The service a config name stands for (exact, lower case).
    pub fn from_name(name: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The names the config accepts, for error messages.
    pub fn names() -> String {
        let names: Vec<&str> = Service::ALL.iter().map(|s| s.name()).collect();
        names.join(", ")
    }

    /// The endpoint (`https://host`) of a region the SDK lists for this
    /// service; `None` for any other region.
    pub fn endpoint(self, region: &str) -> Option<&'static str> {
        self.info()
            .regions
            .iter()
            .find(|(r, _)| *r == region)
            .map(|(_, e)| *e)
    }

    /// Whether the service serves certificates of `category`.
    pub fn serves(self, category: Category) -> bool {
        self.info().categories.contains(&category)
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
