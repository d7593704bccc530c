//! The service table and its parsers: the answer shapes of the SDK models,
//! the region tables, and hostile answers.

use super::*;
use crate::cloud::{api, endpoint};

const SIGNED: &str = "https://bucket.obs.cn-north-4.myhuaweicloud.com/ca.zip?AWSAccessKeyId=AK&Expires=1&Signature=SIGSECRET";

#[test]
fn table_rows_are_in_enum_order_and_names_round_trip() {
    for (i, s) in Service::ALL.into_iter().enumerate() {
        assert_eq!(s as usize, i);
        assert_eq!(Service::from_name(s.name()), Some(s));
        assert_eq!(s.to_string(), s.name());
    }
    // The catalogue's rows and the API table's are in enum order.
    let names: Vec<&str> = Service::ALL.iter().map(|s| s.name()).collect();
    assert_eq!(names, ["dds", "rds", "geminidb", "opengauss", "dcs"]);
    let operations: Vec<&str> = TABLE.iter().map(|s| s.operation).collect();
    assert_eq!(
        operations,
        [
            "ListSslCertDownloadAddress",
            "ListSslCertDownloadLink",
            "ListSslCertDownloadAddresses",
            "ShowSslCertDownloadLink",
            "DownloadSslCert"
        ]
    );
    assert_eq!(Service::names(), "dds, rds, geminidb, opengauss, dcs");
    for wrong in ["", "DDS", "Rds", " dds", "gaussdb", "redis"] {
        assert_eq!(Service::from_name(wrong), None, "{wrong:?}");
    }
}

#[test]
fn requests_are_the_sdk_calls() {
    let v3 = "/v3/p1/instances/i1/ssl-cert/download-link";
    for s in [
        Service::Dds,
        Service::Rds,
        Service::GeminiDb,
        Service::OpenGauss,
    ] {
        assert_eq!(s.method(), Method::Get, "{s}");
        assert_eq!(s.path("p1", "i1"), v3, "{s}");
    }
    assert_eq!(Service::Dcs.method(), Method::Post);
    assert_eq!(Method::Post.as_str(), "POST");
    assert_eq!(
        Service::Dcs.path("p1", "i1"),
        "/v2/p1/instances/i1/ssl-certs/download"
    );
}

#[test]
fn placeholders_inside_values_are_not_expanded() {
    assert_eq!(
        Service::Rds.path("{instance_id}", "{project_id}"),
        "/v3/{instance_id}/instances/{project_id}/ssl-cert/download-link"
    );
    assert_eq!(fill("/{x}/{project_id}{", "p", "i"), "/{x}/p{");
}

#[test]
fn endpoints_follow_the_sdk_region_tables() {
    let cases = [
        (
            Service::Dds,
            "cn-north-4",
            Some("https://dds.cn-north-4.myhuaweicloud.com"),
        ),
        (
            Service::Dds,
            "eu-west-101",
            Some("https://dds.eu-west-101.myhuaweicloud.eu"),
        ),
        (
            Service::Rds,
            "eu-west-101",
            Some("https://rds.eu-west-101.myhuaweicloud.eu"),
        ),
        (
            Service::Rds,
            "ap-southeast-1",
            Some("https://rds.ap-southeast-1.myhuaweicloud.com"),
        ),
        (
            Service::GeminiDb,
            "eu-west-101",
            Some("https://gaussdb-nosql.eu-west-101.myhuaweicloud.eu"),
        ),
        (Service::GeminiDb, "na-mexico-1", None),
        (
            Service::OpenGauss,
            "cn-north-4",
            Some("https://gaussdb-opengauss.cn-north-4.myhuaweicloud.com"),
        ),
        (
            Service::OpenGauss,
            "cn-east-4",
            Some("https://gaussdb.cn-east-4.myhuaweicloud.com"),
        ),
        (
            Service::OpenGauss,
            "af-north-1",
            Some("https://gaussdb.af-north-1.myhuaweicloud.com"),
        ),
        (Service::OpenGauss, "eu-west-101", None),
        // The SDK puts DCS on .com even in eu-west-101.
        (
            Service::Dcs,
            "eu-west-101",
            Some("https://dcs.eu-west-101.myhuaweicloud.com"),
        ),
        (Service::Dcs, "cn-north-3", None),
        (Service::Dds, "", None),
    ];
    for (s, region, want) in cases {
        assert_eq!(s.endpoint(region), want, "{s} {region}");
    }
}

#[test]
fn every_region_row_is_well_formed_and_unique() {
    let prefixes: [&[&str]; 5] = [
        &["dds"],
        &["rds"],
        &["gaussdb-nosql"],
        &["gaussdb-opengauss", "gaussdb"],
        &["dcs"],
    ];
    let counts = [34, 34, 27, 25, 34];
    for (i, s) in Service::ALL.into_iter().enumerate() {
        let rows = s.info().regions;
        assert_eq!(rows.len(), counts[i], "{s}");
        for (n, (region, url)) in rows.iter().enumerate() {
            assert!(endpoint::REGIONS.contains(region), "{s} {region}");
            assert!(
                !rows[..n].iter().any(|(r, _)| r == region),
                "{s} lists {region} twice"
            );
            let ok = prefixes[i].iter().any(|p| {
                ["com", "eu"]
                    .iter()
                    .any(|d| *url == format!("https://{p}.{region}.myhuaweicloud.{d}"))
            });
            assert!(ok, "{s} {region} {url}");
        }
    }
}

#[test]
fn dds_rows_agree_with_the_existing_derivation() {
    assert_eq!(Service::Dds.info().regions.len(), endpoint::REGIONS.len());
    for region in endpoint::REGIONS {
        assert_eq!(
            Service::Dds.endpoint(region).map(str::to_owned),
            endpoint::dds(region),
            "{region}"
        );
    }
}

#[test]
fn categories_served() {
    use crate::catalog::Category::{International, National};
    for s in Service::ALL {
        assert!(s.serves(International), "{s}");
    }
    assert!(Service::Dds.serves(National));
    assert!(Service::Rds.serves(National));
    for s in [Service::GeminiDb, Service::OpenGauss, Service::Dcs] {
        assert!(!s.serves(National), "{s}");
    }
}

fn link(category: &str, url: &str) -> Link {
    Link {
        category: category.into(),
        url: url.into(),
    }
}

#[test]
fn dds_parses_as_before() {
    let body = br#"{"certs":[{"category":"international","download_link":"https://a/x.crt"},
        {"category":"national","download_link":"https://a/n.crt"}]}"#;
    assert_eq!(Service::Dds.parse(body), api::parse_links(body));
    assert_eq!(
        Service::Dds.parse(body).unwrap(),
        [
            link("international", "https://a/x.crt"),
            link("national", "https://a/n.crt")
        ]
    );
}

#[test]
fn rds_answer_shape() {
    let body = br#"{"cert_info_list":[
        {"download_link":"https://rds/Certificate_Download.zip","category":"international"},
        {"download_link":"https://rds/sm.zip","category":"national","extra":1}]}"#;
    assert_eq!(
        Service::Rds.parse(body).unwrap(),
        [
            link("international", "https://rds/Certificate_Download.zip"),
            link("national", "https://rds/sm.zip")
        ]
    );
    assert_eq!(Service::Rds.parse(br#"{"cert_info_list":[]}"#).unwrap(), []);
}

#[test]
fn geminidb_answer_shape() {
    let body =
        br#"{"certs":[{"category":"international","download_link":"https://nosql/ca.crt"}]}"#;
    assert_eq!(
        Service::GeminiDb.parse(body).unwrap(),
        [link("international", "https://nosql/ca.crt")]
    );
}

#[test]
fn opengauss_answer_is_one_standard_link() {
    let body = br#"{"download_link":"https://gauss/Certificate_Download.zip"}"#;
    assert_eq!(
        Service::OpenGauss.parse(body).unwrap(),
        [link(
            "international",
            "https://gauss/Certificate_Download.zip"
        )]
    );
}

#[test]
fn dcs_answer_is_one_standard_link() {
    let body = format!(r#"{{"file_name":"ca.zip","link":"{SIGNED}","bucket_name":"b"}}"#);
    assert_eq!(
        Service::Dcs.parse(body.as_bytes()).unwrap(),
        [link("international", SIGNED)]
    );
    let minimal = format!(r#"{{"link":"{SIGNED}","file_name":null}}"#);
    assert_eq!(Service::Dcs.parse(minimal.as_bytes()).unwrap().len(), 1);
}

/// Each bad answer, per service, with a word its error must contain.
#[test]
fn bad_answers_are_refused_with_the_field_named() {
    let long = "x".repeat(MAX_LINK + 1);
    let many: Vec<String> = (0..=MAX_LINKS)
        .map(|i| format!(r#"{{"category":"c{i}","download_link":"https://a/{i}"}}"#))
        .collect();
    let many = format!(r#"{{"cert_info_list":[{}]}}"#, many.join(","));
    let cases: Vec<(Service, String, &str)> = vec![
        (Service::Rds, "<html>".into(), "RDS answer: not JSON"),
        (Service::Rds, "".into(), "not JSON"),
        (Service::Rds, "[]".into(), "expected a JSON object, got an array"),
        (Service::Rds, r#"{"certs":[]}"#.into(), "cert_info_list is missing"),
        (Service::Rds, r#"{"cert_info_list":null}"#.into(), "cert_info_list is missing"),
        (Service::Rds, r#"{"cert_info_list":{}}"#.into(), "should be an array, got an object"),
        (Service::Rds, r#"{"cert_info_list":[7]}"#.into(), "cert_info_list[0] should be an object"),
        (Service::Rds, r#"{"cert_info_list":[{"download_link":"https://a"}]}"#.into(), "cert_info_list[0].category is missing"),
        (Service::Rds, r#"{"cert_info_list":[{"category":"international","download_link":" "}]}"#.into(), "download_link is empty"),
        (Service::Rds, r#"{"cert_info_list":[{"category":"international","download_link":5}]}"#.into(), "should be a string, got a number"),
        (Service::Rds, format!(r#"{{"cert_info_list":[{{"category":"international","download_link":"{long}"}}]}}"#), "longer than 8192 bytes"),
        (Service::Rds, format!(r#"{{"cert_info_list":[{{"category":"{}","download_link":"https://a"}}]}}"#, "c".repeat(MAX_CATEGORY + 1)), "category is longer than 64"),
        (Service::Rds, many, "more than 16"),
        (Service::GeminiDb, r#"{"certs":[{"category":"international","download_link":"https://a"},{"category":"international","download_link":"https://evil"}]}"#.into(), "\"international\" more than once"),
        (Service::GeminiDb, r#"{"certs":"x"}"#.into(), "GeminiDB answer: certs should be an array, got a string"),
        (Service::OpenGauss, "{}".into(), "GaussDB (openGauss) answer: download_link is missing"),
        (Service::OpenGauss, r#"{"download_link":""}"#.into(), "download_link is empty"),
        (Service::OpenGauss, "\"https://a\"".into(), "got a string"),
        (Service::Dcs, r#"{"file_name":"ca.zip","bucket_name":"b"}"#.into(), "DCS answer: link is missing"),
        (Service::Dcs, r#"{"link":true}"#.into(), "link should be a string, got a boolean"),
        (Service::Dcs, format!("{}{}", "[".repeat(200), "]".repeat(200)), "not JSON"),
        (Service::Dcs, format!(r#"{{"link":"https://a","pad":"{}"}}"#, "p".repeat(MAX_ANSWER)), "larger than 65536 bytes"),
    ];
    for (s, body, want) in cases {
        let e = s.parse(body.as_bytes()).unwrap_err();
        assert!(matches!(e, ApiError::BadResponse(_)), "{s}: {e:?}");
        assert!(!e.is_transient(), "{s}: {e}");
        assert!(e.to_string().contains(want), "{s}: {e} (wanted {want:?})");
    }
}

/// A pre-signed link in the wrong place never reaches the error text.
#[test]
fn errors_never_quote_a_link() {
    let bodies = [
        format!(r#"{{"link":["{SIGNED}"]}}"#),
        format!(r#"{{"link":{{"u":"{SIGNED}"}}}}"#),
        format!(r#"{{"cert_info_list":"{SIGNED}"}}"#),
        format!(r#"{{"cert_info_list":["{SIGNED}"]}}"#),
        format!(r#"{{"certs":[{{"category":"{SIGNED}","download_link":"{SIGNED}"}}]}}"#),
        format!(r#"{{"download_link":"{SIGNED}" "#),
        format!(r#"["{SIGNED}"]"#),
        format!(r#""{SIGNED}""#),
    ];
    for body in &bodies {
        for s in [
            Service::Rds,
            Service::GeminiDb,
            Service::OpenGauss,
            Service::Dcs,
        ] {
            if let Err(e) = s.parse(body.as_bytes()) {
                let text = format!("{e} {e:?}");
                assert!(!text.contains("SIGSECRET"), "{s}: {text}");
                assert!(!text.contains("AWSAccessKeyId"), "{s}: {text}");
            }
        }
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn no_answer_makes_a_parser_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            for s in Service::ALL {
                let _ = s.parse(&body);
            }
        }

        #[test]
        fn any_link_string_parses_back_unchanged(url in "[a-zA-Z0-9:/?&=._-]{1,200}") {
            let body = serde_json::json!({"link": url, "file_name": "x"}).to_string();
            let links = Service::Dcs.parse(body.as_bytes());
            prop_assert_eq!(links, Ok(vec![link("international", &url)]));
        }
    }
}
