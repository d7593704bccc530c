//! The endpoint of every service in every region, copied verbatim from the
//! official Python SDKs, version 3.1.219: each package's
//! `v*/region/*_region.py` (`Region("{region}", "{endpoint}")` rows, in the
//! SDK's order). Data only; [`super::Service::endpoint`] looks regions up here.
//!
//! Worth knowing when reading them:
//! - openGauss is `gaussdb-opengauss.{region}` in most regions and
//!   `gaussdb.{region}` in eight (cn-east-2, cn-east-4, cn-east-5,
//!   cn-north-12, ap-southeast-5, tr-west-1, me-east-1, af-north-1);
//! - `eu-west-101` is on `.myhuaweicloud.eu` for DDS, RDS and GeminiDB, but
//!   on `.myhuaweicloud.com` for DCS, and openGauss does not list it;
//! - GeminiDB lists 27 regions and openGauss 25; DDS, RDS and DCS list 34.
//!
//! To refresh: unzip the newer wheels and copy the rows again; the tests in
//! `cloud::service` check the shape of every row.

/// `huaweicloudsdkdds` v3/region/dds_region.py.
pub(super) const DDS: &[(&str, &str)] = &[
    ("eu-west-101", "https://dds.eu-west-101.myhuaweicloud.eu"),
    ("af-south-1", "https://dds.af-south-1.myhuaweicloud.com"),
    ("cn-north-4", "https://dds.cn-north-4.myhuaweicloud.com"),
    ("cn-north-1", "https://dds.cn-north-1.myhuaweicloud.com"),
    ("cn-east-2", "https://dds.cn-east-2.myhuaweicloud.com"),
    ("cn-east-3", "https://dds.cn-east-3.myhuaweicloud.com"),
    ("cn-south-1", "https://dds.cn-south-1.myhuaweicloud.com"),
    (
        "cn-southwest-2",
        "https://dds.cn-southwest-2.myhuaweicloud.com",
    ),
    (
        "ap-southeast-2",
        "https://dds.ap-southeast-2.myhuaweicloud.com",
    ),
    (
        "ap-southeast-1",
        "https://dds.ap-southeast-1.myhuaweicloud.com",
    ),
    (
        "ap-southeast-3",
        "https://dds.ap-southeast-3.myhuaweicloud.com",
    ),
    (
        "ru-northwest-2",
        "https://dds.ru-northwest-2.myhuaweicloud.com",
    ),
    ("cn-south-2", "https://dds.cn-south-2.myhuaweicloud.com"),
    ("cn-north-2", "https://dds.cn-north-2.myhuaweicloud.com"),
    ("na-mexico-1", "https://dds.na-mexico-1.myhuaweicloud.com"),
    ("la-north-2", "https://dds.la-north-2.myhuaweicloud.com"),
    ("sa-brazil-1", "https://dds.sa-brazil-1.myhuaweicloud.com"),
    ("la-south-2", "https://dds.la-south-2.myhuaweicloud.com"),
    ("cn-north-9", "https://dds.cn-north-9.myhuaweicloud.com"),
    ("me-east-1", "https://dds.me-east-1.myhuaweicloud.com"),
    ("tr-west-1", "https://dds.tr-west-1.myhuaweicloud.com"),
    (
        "ap-southeast-4",
        "https://dds.ap-southeast-4.myhuaweicloud.com",
    ),
    ("eu-west-0", "https://dds.eu-west-0.myhuaweicloud.com"),
    (
        "my-kualalumpur-1",
        "https://dds.my-kualalumpur-1.myhuaweicloud.com",
    ),
    ("ru-moscow-1", "https://dds.ru-moscow-1.myhuaweicloud.com"),
    ("ae-ad-1", "https://dds.ae-ad-1.myhuaweicloud.com"),
    ("cn-east-5", "https://dds.cn-east-5.myhuaweicloud.com"),
    ("cn-east-4", "https://dds.cn-east-4.myhuaweicloud.com"),
    ("cn-north-12", "https://dds.cn-north-12.myhuaweicloud.com"),
    ("af-north-1", "https://dds.af-north-1.myhuaweicloud.com"),
    (
        "ap-southeast-5",
        "https://dds.ap-southeast-5.myhuaweicloud.com",
    ),
    ("cn-north-11", "https://dds.cn-north-11.myhuaweicloud.com"),
    (
        "cn-southwest-3",
        "https://dds.cn-southwest-3.myhuaweicloud.com",
    ),
    ("cn-south-4", "https://dds.cn-south-4.myhuaweicloud.com"),
];

/// `huaweicloudsdkrds` v3/region/rds_region.py.
pub(super) const RDS: &[(&str, &str)] = &[
    ("af-south-1", "https://rds.af-south-1.myhuaweicloud.com"),
    ("cn-north-4", "https://rds.cn-north-4.myhuaweicloud.com"),
    ("cn-north-1", "https://rds.cn-north-1.myhuaweicloud.com"),
    ("cn-east-2", "https://rds.cn-east-2.myhuaweicloud.com"),
    ("cn-east-3", "https://rds.cn-east-3.myhuaweicloud.com"),
    ("cn-east-5", "https://rds.cn-east-5.myhuaweicloud.com"),
    ("cn-east-4", "https://rds.cn-east-4.myhuaweicloud.com"),
    ("cn-south-1", "https://rds.cn-south-1.myhuaweicloud.com"),
    (
        "cn-southwest-2",
        "https://rds.cn-southwest-2.myhuaweicloud.com",
    ),
    (
        "ap-southeast-2",
        "https://rds.ap-southeast-2.myhuaweicloud.com",
    ),
    (
        "ap-southeast-1",
        "https://rds.ap-southeast-1.myhuaweicloud.com",
    ),
    (
        "ap-southeast-3",
        "https://rds.ap-southeast-3.myhuaweicloud.com",
    ),
    (
        "ru-northwest-2",
        "https://rds.ru-northwest-2.myhuaweicloud.com",
    ),
    ("sa-brazil-1", "https://rds.sa-brazil-1.myhuaweicloud.com"),
    ("la-north-2", "https://rds.la-north-2.myhuaweicloud.com"),
    ("cn-south-2", "https://rds.cn-south-2.myhuaweicloud.com"),
    ("na-mexico-1", "https://rds.na-mexico-1.myhuaweicloud.com"),
    ("la-south-2", "https://rds.la-south-2.myhuaweicloud.com"),
    ("cn-north-9", "https://rds.cn-north-9.myhuaweicloud.com"),
    ("cn-north-2", "https://rds.cn-north-2.myhuaweicloud.com"),
    ("tr-west-1", "https://rds.tr-west-1.myhuaweicloud.com"),
    (
        "ap-southeast-4",
        "https://rds.ap-southeast-4.myhuaweicloud.com",
    ),
    (
        "ap-southeast-5",
        "https://rds.ap-southeast-5.myhuaweicloud.com",
    ),
    ("ae-ad-1", "https://rds.ae-ad-1.myhuaweicloud.com"),
    ("eu-west-101", "https://rds.eu-west-101.myhuaweicloud.eu"),
    ("eu-west-0", "https://rds.eu-west-0.myhuaweicloud.com"),
    (
        "my-kualalumpur-1",
        "https://rds.my-kualalumpur-1.myhuaweicloud.com",
    ),
    ("ru-moscow-1", "https://rds.ru-moscow-1.myhuaweicloud.com"),
    ("me-east-1", "https://rds.me-east-1.myhuaweicloud.com"),
    ("af-north-1", "https://rds.af-north-1.myhuaweicloud.com"),
    ("cn-north-12", "https://rds.cn-north-12.myhuaweicloud.com"),
    ("cn-south-4", "https://rds.cn-south-4.myhuaweicloud.com"),
    (
        "cn-southwest-3",
        "https://rds.cn-southwest-3.myhuaweicloud.com",
    ),
    ("cn-north-11", "https://rds.cn-north-11.myhuaweicloud.com"),
];

/// `huaweicloudsdkgaussdbfornosql` v3/region/gaussdbfornosql_region.py.
pub(super) const GEMINIDB: &[(&str, &str)] = &[
    (
        "af-south-1",
        "https://gaussdb-nosql.af-south-1.myhuaweicloud.com",
    ),
    (
        "cn-north-4",
        "https://gaussdb-nosql.cn-north-4.myhuaweicloud.com",
    ),
    (
        "cn-north-1",
        "https://gaussdb-nosql.cn-north-1.myhuaweicloud.com",
    ),
    (
        "cn-east-2",
        "https://gaussdb-nosql.cn-east-2.myhuaweicloud.com",
    ),
    (
        "cn-east-3",
        "https://gaussdb-nosql.cn-east-3.myhuaweicloud.com",
    ),
    (
        "cn-south-1",
        "https://gaussdb-nosql.cn-south-1.myhuaweicloud.com",
    ),
    (
        "cn-southwest-2",
        "https://gaussdb-nosql.cn-southwest-2.myhuaweicloud.com",
    ),
    (
        "ap-southeast-2",
        "https://gaussdb-nosql.ap-southeast-2.myhuaweicloud.com",
    ),
    (
        "ap-southeast-1",
        "https://gaussdb-nosql.ap-southeast-1.myhuaweicloud.com",
    ),
    (
        "ap-southeast-3",
        "https://gaussdb-nosql.ap-southeast-3.myhuaweicloud.com",
    ),
    (
        "ap-southeast-4",
        "https://gaussdb-nosql.ap-southeast-4.myhuaweicloud.com",
    ),
    (
        "ap-southeast-5",
        "https://gaussdb-nosql.ap-southeast-5.myhuaweicloud.com",
    ),
    (
        "me-east-1",
        "https://gaussdb-nosql.me-east-1.myhuaweicloud.com",
    ),
    (
        "cn-east-4",
        "https://gaussdb-nosql.cn-east-4.myhuaweicloud.com",
    ),
    (
        "cn-south-4",
        "https://gaussdb-nosql.cn-south-4.myhuaweicloud.com",
    ),
    (
        "cn-southwest-3",
        "https://gaussdb-nosql.cn-southwest-3.myhuaweicloud.com",
    ),
    (
        "tr-west-1",
        "https://gaussdb-nosql.tr-west-1.myhuaweicloud.com",
    ),
    (
        "ru-northwest-2",
        "https://gaussdb-nosql.ru-northwest-2.myhuaweicloud.com",
    ),
    (
        "cn-south-2",
        "https://gaussdb-nosql.cn-south-2.myhuaweicloud.com",
    ),
    (
        "cn-north-2",
        "https://gaussdb-nosql.cn-north-2.myhuaweicloud.com",
    ),
    (
        "la-north-2",
        "https://gaussdb-nosql.la-north-2.myhuaweicloud.com",
    ),
    (
        "sa-brazil-1",
        "https://gaussdb-nosql.sa-brazil-1.myhuaweicloud.com",
    ),
    (
        "la-south-2",
        "https://gaussdb-nosql.la-south-2.myhuaweicloud.com",
    ),
    (
        "cn-north-9",
        "https://gaussdb-nosql.cn-north-9.myhuaweicloud.com",
    ),
    (
        "eu-west-101",
        "https://gaussdb-nosql.eu-west-101.myhuaweicloud.eu",
    ),
    (
        "cn-north-11",
        "https://gaussdb-nosql.cn-north-11.myhuaweicloud.com",
    ),
    (
        "ru-moscow-1",
        "https://gaussdb-nosql.ru-moscow-1.myhuaweicloud.com",
    ),
];

/// `huaweicloudsdkgaussdbforopengauss` v3/region/gaussdbforopengauss_region.py.
pub(super) const OPENGAUSS: &[(&str, &str)] = &[
    (
        "cn-north-4",
        "https://gaussdb-opengauss.cn-north-4.myhuaweicloud.com",
    ),
    (
        "cn-southwest-2",
        "https://gaussdb-opengauss.cn-southwest-2.myhuaweicloud.com",
    ),
    (
        "cn-south-1",
        "https://gaussdb-opengauss.cn-south-1.myhuaweicloud.com",
    ),
    (
        "ru-northwest-2",
        "https://gaussdb-opengauss.ru-northwest-2.myhuaweicloud.com",
    ),
    (
        "ap-southeast-3",
        "https://gaussdb-opengauss.ap-southeast-3.myhuaweicloud.com",
    ),
    (
        "cn-north-2",
        "https://gaussdb-opengauss.cn-north-2.myhuaweicloud.com",
    ),
    (
        "ap-southeast-2",
        "https://gaussdb-opengauss.ap-southeast-2.myhuaweicloud.com",
    ),
    (
        "ap-southeast-1",
        "https://gaussdb-opengauss.ap-southeast-1.myhuaweicloud.com",
    ),
    (
        "cn-east-3",
        "https://gaussdb-opengauss.cn-east-3.myhuaweicloud.com",
    ),
    (
        "sa-brazil-1",
        "https://gaussdb-opengauss.sa-brazil-1.myhuaweicloud.com",
    ),
    (
        "la-south-2",
        "https://gaussdb-opengauss.la-south-2.myhuaweicloud.com",
    ),
    (
        "la-north-2",
        "https://gaussdb-opengauss.la-north-2.myhuaweicloud.com",
    ),
    (
        "af-south-1",
        "https://gaussdb-opengauss.af-south-1.myhuaweicloud.com",
    ),
    (
        "cn-north-9",
        "https://gaussdb-opengauss.cn-north-9.myhuaweicloud.com",
    ),
    (
        "cn-south-2",
        "https://gaussdb-opengauss.cn-south-2.myhuaweicloud.com",
    ),
    ("cn-east-4", "https://gaussdb.cn-east-4.myhuaweicloud.com"),
    ("cn-east-5", "https://gaussdb.cn-east-5.myhuaweicloud.com"),
    (
        "ap-southeast-5",
        "https://gaussdb.ap-southeast-5.myhuaweicloud.com",
    ),
    ("tr-west-1", "https://gaussdb.tr-west-1.myhuaweicloud.com"),
    ("me-east-1", "https://gaussdb.me-east-1.myhuaweicloud.com"),
    ("af-north-1", "https://gaussdb.af-north-1.myhuaweicloud.com"),
    (
        "ap-southeast-4",
        "https://gaussdb-opengauss.ap-southeast-4.myhuaweicloud.com",
    ),
    ("cn-east-2", "https://gaussdb.cn-east-2.myhuaweicloud.com"),
    (
        "cn-north-12",
        "https://gaussdb.cn-north-12.myhuaweicloud.com",
    ),
    (
        "cn-south-4",
        "https://gaussdb-opengauss.cn-south-4.myhuaweicloud.com",
    ),
];

/// `huaweicloudsdkdcs` v2/region/dcs_region.py.
pub(super) const DCS: &[(&str, &str)] = &[
    ("af-south-1", "https://dcs.af-south-1.myhuaweicloud.com"),
    ("cn-north-2", "https://dcs.cn-north-2.myhuaweicloud.com"),
    ("cn-north-4", "https://dcs.cn-north-4.myhuaweicloud.com"),
    ("cn-north-1", "https://dcs.cn-north-1.myhuaweicloud.com"),
    ("cn-east-2", "https://dcs.cn-east-2.myhuaweicloud.com"),
    ("cn-east-3", "https://dcs.cn-east-3.myhuaweicloud.com"),
    ("cn-south-1", "https://dcs.cn-south-1.myhuaweicloud.com"),
    ("cn-south-2", "https://dcs.cn-south-2.myhuaweicloud.com"),
    (
        "cn-southwest-2",
        "https://dcs.cn-southwest-2.myhuaweicloud.com",
    ),
    (
        "ap-southeast-2",
        "https://dcs.ap-southeast-2.myhuaweicloud.com",
    ),
    (
        "ap-southeast-1",
        "https://dcs.ap-southeast-1.myhuaweicloud.com",
    ),
    (
        "ap-southeast-3",
        "https://dcs.ap-southeast-3.myhuaweicloud.com",
    ),
    (
        "ru-northwest-2",
        "https://dcs.ru-northwest-2.myhuaweicloud.com",
    ),
    ("sa-brazil-1", "https://dcs.sa-brazil-1.myhuaweicloud.com"),
    ("la-north-2", "https://dcs.la-north-2.myhuaweicloud.com"),
    ("la-south-2", "https://dcs.la-south-2.myhuaweicloud.com"),
    ("cn-north-9", "https://dcs.cn-north-9.myhuaweicloud.com"),
    ("na-mexico-1", "https://dcs.na-mexico-1.myhuaweicloud.com"),
    ("ae-ad-1", "https://dcs.ae-ad-1.myhuaweicloud.com"),
    ("tr-west-1", "https://dcs.tr-west-1.myhuaweicloud.com"),
    (
        "ap-southeast-4",
        "https://dcs.ap-southeast-4.myhuaweicloud.com",
    ),
    ("eu-west-101", "https://dcs.eu-west-101.myhuaweicloud.com"),
    ("me-east-1", "https://dcs.me-east-1.myhuaweicloud.com"),
    ("eu-west-0", "https://dcs.eu-west-0.myhuaweicloud.com"),
    ("cn-east-5", "https://dcs.cn-east-5.myhuaweicloud.com"),
    (
        "my-kualalumpur-1",
        "https://dcs.my-kualalumpur-1.myhuaweicloud.com",
    ),
    ("ru-moscow-1", "https://dcs.ru-moscow-1.myhuaweicloud.com"),
    ("cn-east-4", "https://dcs.cn-east-4.myhuaweicloud.com"),
    (
        "ap-southeast-5",
        "https://dcs.ap-southeast-5.myhuaweicloud.com",
    ),
    ("cn-north-12", "https://dcs.cn-north-12.myhuaweicloud.com"),
    ("cn-south-4", "https://dcs.cn-south-4.myhuaweicloud.com"),
    (
        "cn-southwest-3",
        "https://dcs.cn-southwest-3.myhuaweicloud.com",
    ),
    ("cn-north-11", "https://dcs.cn-north-11.myhuaweicloud.com"),
    ("af-north-1", "https://dcs.af-north-1.myhuaweicloud.com"),
];
