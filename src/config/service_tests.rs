//! Unit tests of the per-instance `service` key and `[cloud.endpoints]`:
//! names, endpoint derivation from the region and its overrides, and the
//! `national` output of a service that serves none.

use std::path::Path;

use super::*;
use crate::catalog::Service;

fn check(text: &str) -> Result<Config, ConfigError> {
    validate(parse(text)?, Path::new("/base"))
}

/// A config with `cloud` lines and one instance of `service` with `extra`
/// lines.
fn config(cloud: &str, service: &str, extra: &str) -> String {
    format!(
        r#"
[cloud]
project_id = "p1"
{cloud}
[auth]
method = "token"
token = "t"
[[instances]]
id = "i1"
service = "{service}"
international = "/tmp/x/a.crt"
{extra}
"#
    )
}

#[test]
fn every_service_is_derived_from_the_region() {
    for (service, want) in [
        ("dds", "https://dds.cn-north-4.myhuaweicloud.com"),
        ("rds", "https://rds.cn-north-4.myhuaweicloud.com"),
        (
            "geminidb",
            "https://gaussdb-nosql.cn-north-4.myhuaweicloud.com",
        ),
        (
            "opengauss",
            "https://gaussdb-opengauss.cn-north-4.myhuaweicloud.com",
        ),
        ("dcs", "https://dcs.cn-north-4.myhuaweicloud.com"),
    ] {
        let c = check(&config("region = \"cn-north-4\"", service, "")).unwrap();
        let s = Service::from_name(service).unwrap();
        assert_eq!(c.instances[0].service, s);
        // Only the service in use has an endpoint.
        assert_eq!(c.cloud.endpoints.len(), 1, "{service}");
        assert_eq!(c.cloud.endpoint(s), Some(want), "{service}");
    }
}

#[test]
fn service_defaults_to_dds() {
    let text = config("region = \"cn-north-4\"", "dds", "").replace("service = \"dds\"\n", "");
    let c = check(&text).unwrap();
    assert_eq!(c.instances[0].service, Service::Dds);
}

#[test]
fn an_unknown_service_is_named_with_the_accepted_ones() {
    let e = check(&config("region = \"cn-north-4\"", "mongo", "")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("instances[0].service"));
    assert!(e.message.contains("\"mongo\""), "{}", e.message);
    assert!(
        e.message.contains("dds, rds, geminidb, opengauss, dcs"),
        "{}",
        e.message
    );
}

#[test]
fn the_region_tables_differ_per_service() {
    // DCS stays on .com in eu-west-101, RDS moves to .eu like DDS.
    let c = check(&config("region = \"eu-west-101\"", "dcs", "")).unwrap();
    assert_eq!(
        c.cloud.endpoint(Service::Dcs),
        Some("https://dcs.eu-west-101.myhuaweicloud.com")
    );
    let c = check(&config("region = \"eu-west-101\"", "rds", "")).unwrap();
    assert_eq!(
        c.cloud.endpoint(Service::Rds),
        Some("https://rds.eu-west-101.myhuaweicloud.eu")
    );
    // openGauss is gaussdb.{region} in some regions.
    let c = check(&config("region = \"cn-east-2\"", "opengauss", "")).unwrap();
    assert_eq!(
        c.cloud.endpoint(Service::OpenGauss),
        Some("https://gaussdb.cn-east-2.myhuaweicloud.com")
    );
}

#[test]
fn a_service_without_an_endpoint_in_the_region_names_the_instance() {
    let mut text = config("region = \"eu-west-101\"", "dds", "");
    text.push_str(
        "[[instances]]\nid = \"i2\"\nservice = \"opengauss\"\ninternational = \"/tmp/x/b.crt\"\n",
    );
    let e = check(&text).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("instances[1].service"));
    assert!(e.message.contains("opengauss"), "{}", e.message);
    assert!(e.message.contains("eu-west-101"), "{}", e.message);
    // An override makes it usable; the region still serves the DDS instance.
    let text = text.replace(
        "region = \"eu-west-101\"",
        "region = \"eu-west-101\"\n[cloud.endpoints]\nopengauss = \"https://127.0.0.1:9443/\"",
    );
    let c = check(&text).unwrap();
    assert_eq!(
        c.cloud.endpoint(Service::OpenGauss),
        Some("https://127.0.0.1:9443")
    );
    assert_eq!(
        c.cloud.endpoint(Service::Dds),
        Some("https://dds.eu-west-101.myhuaweicloud.eu")
    );
}

#[test]
fn an_unused_service_is_not_derived() {
    // openGauss has no eu-west-101 endpoint, but nobody uses it here.
    let c = check(&config("region = \"eu-west-101\"", "dds", "")).unwrap();
    assert_eq!(c.cloud.endpoint(Service::OpenGauss), None);
}

#[test]
fn endpoint_overrides_follow_the_cloud_endpoint_rules() {
    let text = config(
        "region = \"cn-north-4\"\n[cloud.endpoints]\nrds = \"https://127.0.0.1:8443\"",
        "rds",
        "",
    );
    assert_eq!(
        check(&text).unwrap().cloud.endpoint(Service::Rds),
        Some("https://127.0.0.1:8443")
    );
    for bad in ["http://127.0.0.1:8443", "https://h/path", "https://"] {
        let text = config(
            &format!("region = \"cn-north-4\"\n[cloud.endpoints]\nrds = \"{bad}\""),
            "rds",
            "",
        );
        let e = check(&text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("cloud.endpoints.rds"), "{bad}");
    }
    // No region needed when every used service has its endpoint.
    let text = config(
        "[cloud.endpoints]\ndcs = \"https://127.0.0.1:1\"",
        "dcs",
        "",
    );
    assert!(check(&text).is_ok());
    // Without either, the error says which key would do.
    let e = check(&config("", "dcs", "")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("cloud.region"));
    assert!(e.message.contains("cloud.endpoints.dcs"), "{}", e.message);
}

#[test]
fn an_unknown_endpoints_key_is_refused() {
    let text = config(
        "region = \"cn-north-4\"\n[cloud.endpoints]\nredis = \"https://127.0.0.1:1\"",
        "dds",
        "",
    );
    let e = check(&text).unwrap_err();
    assert!(e.message.contains("redis"), "{e}");
}

#[test]
fn cloud_endpoint_and_endpoints_dds_together_are_refused() {
    let text = config(
        "endpoint = \"https://127.0.0.1:1\"\n[cloud.endpoints]\ndds = \"https://127.0.0.1:2\"",
        "dds",
        "",
    );
    let e = check(&text).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("cloud.endpoints.dds"));
    // cloud.endpoint still sets DDS's, and only DDS's.
    let text = config(
        "region = \"cn-north-4\"\nendpoint = \"https://127.0.0.1:1\"",
        "rds",
        "",
    );
    let c = check(&text).unwrap();
    assert_eq!(
        c.cloud.endpoint(Service::Rds),
        Some("https://rds.cn-north-4.myhuaweicloud.com")
    );
}

#[test]
fn national_is_refused_where_the_service_serves_none() {
    for service in ["geminidb", "opengauss", "dcs"] {
        let text = config(
            "region = \"cn-north-4\"",
            service,
            "national = \"/tmp/x/n.crt\"",
        );
        let e = check(&text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("instances[0].national"), "{service}");
        assert!(e.message.contains(service), "{}", e.message);
    }
    for service in ["dds", "rds"] {
        let text = config(
            "region = \"cn-north-4\"",
            service,
            "national = \"/tmp/x/n.crt\"",
        );
        assert!(check(&text).is_ok(), "{service}");
    }
}

#[test]
fn truststore_and_keep_previous_work_for_every_service() {
    for s in Service::ALL {
        let text = config(
            "region = \"cn-north-4\"",
            s.name(),
            "truststore = \"/tmp/x/t.p12\"\nkeep_previous = \"7d\"",
        );
        let c = check(&text).unwrap();
        assert_eq!(c.instances[0].outputs.len(), 2, "{s}");
    }
}
