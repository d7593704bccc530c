//! Endpoints derived from a region, as the official SDKs derive them.
//!
//! DDS lives at `https://dds.{region}.myhuaweicloud.com` and IAM at
//! `https://iam.{region}.myhuaweicloud.com`, except in `eu-west-101`, which
//! uses the `.myhuaweicloud.eu` domain. Only the regions the official SDK
//! knows are accepted, so a typo in `cloud.region` is a config error rather
//! than a DNS failure an hour later.

/// The regions the official SDK's region table lists for DDS and IAM.
pub const REGIONS: &[&str] = &[
    "af-north-1",
    "af-south-1",
    "ae-ad-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "cn-east-2",
    "cn-east-3",
    "cn-east-4",
    "cn-east-5",
    "cn-north-1",
    "cn-north-2",
    "cn-north-4",
    "cn-north-9",
    "cn-north-11",
    "cn-north-12",
    "cn-south-1",
    "cn-south-2",
    "cn-south-4",
    "cn-southwest-2",
    "cn-southwest-3",
    "eu-west-0",
    "eu-west-101",
    "la-north-2",
    "la-south-2",
    "me-east-1",
    "my-kualalumpur-1",
    "na-mexico-1",
    "ru-moscow-1",
    "ru-northwest-2",
    "sa-brazil-1",
    "tr-west-1",
];

fn domain(region: &str) -> &'static str {
    if region == "eu-west-101" {
        "myhuaweicloud.eu"
    } else {
        "myhuaweicloud.com"
    }
}

fn derive(service: &str, region: &str) -> Option<String> {
    REGIONS
        .contains(&region)
        .then(|| format!("https://{service}.{region}.{}", domain(region)))
}

/// The DDS endpoint of a known region.
pub fn dds(region: &str) -> Option<String> {
    derive("dds", region)
}

/// The IAM endpoint of a known region.
pub fn iam(region: &str) -> Option<String> {
    derive("iam", region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_com_and_eu_domains() {
        assert_eq!(
            dds("ap-southeast-1").as_deref(),
            Some("https://dds.ap-southeast-1.myhuaweicloud.com")
        );
        assert_eq!(
            dds("eu-west-101").as_deref(),
            Some("https://dds.eu-west-101.myhuaweicloud.eu")
        );
        assert_eq!(
            iam("eu-west-101").as_deref(),
            Some("https://iam.eu-west-101.myhuaweicloud.eu")
        );
    }

    #[test]
    fn unknown_region_has_no_endpoint() {
        assert_eq!(dds("cn-north-3"), None);
        assert_eq!(iam(""), None);
    }
}
