//! Every service end to end: RDS, GeminiDB, GaussDB (openGauss) and DCS
//! beside DDS, each instance registered with its service in the stand-in
//! (which answers it only through that service's request, in its shape) and
//! every service's endpoint set in `[cloud.endpoints]`, and downloads in the
//! services' forms (zips, DER). Covers `--once` and
//! the daemon (a DCS rotation), the DCS POST on the wire (AK/SK signed, no
//! body), the pre-signed DCS link never logged, the `service` in log lines,
//! metrics and hooks, and the config errors of a wrong `service`.

use std::fs;
use std::time::Duration;

use dds_standin::{Form, Recorded};

use crate::support::*;

const AK: &str = "SVCTESTACCESSKEY0001";
const SK: &str = "svc-test-secret-key-0000000000000000000001";

/// The non-DDS services, with one instance ID each.
const OTHERS: [(&str, &str); 4] = [
    ("rds", "rds-1"),
    ("geminidb", "gem-1"),
    ("opengauss", "og-1"),
    ("dcs", "dcs-1"),
];

/// Sets every non-DDS service's endpoint to the stand-in (DDS's is the
/// env's own `cloud.endpoint`).
fn every_endpoint_at_the_standin(env: &mut Env) {
    let api = env.standin.api_url();
    env.cloud = format!(
        "[cloud.endpoints]\nrds = \"{api}\"\ngeminidb = \"{api}\"\nopengauss = \"{api}\"\ndcs = \"{api}\"\n"
    );
}

/// An env signing with AK/SK, every service's endpoint the stand-in, a DDS
/// instance and one instance of each other service; each writes its
/// `international` certificate to `out/{id}.crt` (RDS its `national` too),
/// and records its hook's service in `hook/{id}.service`.
fn fleet() -> Env {
    let mut env = Env::new();
    env.standin.add_aksk(AK, SK);
    env.auth = format!("method = \"aksk\"\naccess_key = \"{AK}\"\nsecret_key = \"{SK}\"\n");
    every_endpoint_at_the_standin(&mut env);
    let hook = env.path("service-hook.sh");
    fs::create_dir_all(env.path("hook")).unwrap();
    fs::write(
        &hook,
        format!(
            "printf '%s\\n' \"$DDS_CERTSYNC_SERVICE\" >> \"{}/$DDS_CERTSYNC_INSTANCE_ID.service\"\n",
            env.path("hook").display()
        ),
    )
    .unwrap();
    let mut add = |service: &str, id: &str, extra: &str| {
        env.standin.add_instance(PROJECT, id);
        env.standin.set_service(id, service);
        env.raw_instance(&format!(
            "id = \"{id}\"\nservice = \"{service}\"\ninternational = \"out/{id}.crt\"\n{extra}on_change = [\"/bin/sh\", \"{}\"]\n",
            hook.display()
        ));
    };
    add("dds", "dds-1", "");
    // Downloads as the services publish them: RDS and openGauss a zip of
    // ca.pem and ca-bundle.pem, DCS a zip too, GeminiDB a DER certificate.
    let forms = [
        ("rds-1", Form::Zip),
        ("og-1", Form::Zip),
        ("dcs-1", Form::Zip),
        ("gem-1", Form::Der),
    ];
    for (service, id) in OTHERS {
        let extra = if service == "rds" {
            "national = \"out/rds-1-national.crt\"\n"
        } else {
            ""
        };
        add(service, id, extra);
    }
    for (id, form) in forms {
        env.standin.set_form(id, "international", form);
    }
    env
}

/// What the instance's `international` file must hold.
fn served(env: &Env, id: &str) -> Vec<u8> {
    env.served(id, "international")
}

fn file(env: &Env, id: &str) -> Vec<u8> {
    fs::read(env.path(&format!("out/{id}.crt"))).unwrap_or_default()
}

fn hook_services(env: &Env, id: &str) -> String {
    fs::read_to_string(env.path(&format!("hook/{id}.service"))).unwrap_or_default()
}

#[test]
fn every_service_once_with_the_dcs_post_signed_and_its_link_never_logged() {
    let env = fleet();
    env.write_config();
    let out = env
        .command(&["--once"])
        .env("RUST_LOG", "trace")
        .output()
        .expect("run binary");
    let run = Run::from(out);
    run.assert_code(0);
    for id in ["dds-1", "rds-1", "gem-1", "og-1", "dcs-1"] {
        assert_eq!(file(&env, id), served(&env, id), "{id}\n{}", run.all());
        let service = if id == "dds-1" {
            "dds".to_string()
        } else {
            OTHERS.iter().find(|(_, i)| *i == id).unwrap().0.to_string()
        };
        assert_eq!(hook_services(&env, id), format!("{service}\n"), "{id}");
        // So does its summary line, after the instance's name; DDS lines
        // read as they always have.
        let named = if service == "dds" {
            format!("ok     {id} ({id}): ")
        } else {
            format!("ok     {id} ({service} {id}): ")
        };
        assert!(
            run.stdout.lines().any(|l| l.starts_with(&named)),
            "{named}\n{}",
            run.stdout
        );
        // The round's lines carry the service.
        assert!(
            run.stderr
                .lines()
                .any(|l| l.contains(&format!("instance_id={id}"))
                    && l.contains(&format!("service={service}"))
                    && l.contains("replaced")),
            "{id}: no replaced line with service={service}\n{}",
            run.stderr
        );
    }
    assert_eq!(
        fs::read(env.path("out/rds-1-national.crt")).unwrap(),
        env.served("rds-1", "national")
    );

    let requests = env.standin.requests();
    // Each instance was asked through its own service's call.
    let api: Vec<&Recorded> = requests
        .iter()
        .filter(|r| r.listener == Listener::Api)
        .collect();
    for id in ["dds-1", "rds-1", "gem-1", "og-1"] {
        let path = format!("/v3/{PROJECT}/instances/{id}/ssl-cert/download-link");
        assert!(
            api.iter().any(|r| r.method == "GET" && r.path == path),
            "{id}: {api:?}"
        );
    }
    // The DCS call: a POST without a body, signed over what was sent (the
    // stand-in verified the signature against the empty body's hash).
    let dcs: Vec<&&Recorded> = api
        .iter()
        .filter(|r| r.path.contains("/instances/dcs-1/"))
        .collect();
    assert_eq!(dcs.len(), 1, "{dcs:?}");
    let post = dcs[0];
    assert_eq!(post.method, "POST");
    assert_eq!(
        post.path,
        format!("/v2/{PROJECT}/instances/dcs-1/ssl-certs/download")
    );
    assert!(
        post.header("content-length").is_none_or(|l| l == "0"),
        "{post:?}"
    );
    assert!(!post.has_header("transfer-encoding"), "{post:?}");
    assert_eq!(post.header("content-type"), Some("application/json"));
    let auth = post.header("authorization").unwrap_or_default();
    assert!(
        auth.starts_with(&format!("SDK-HMAC-SHA256 Access={AK}, SignedHeaders="))
            && auth.contains("content-type;host;"),
        "{auth}"
    );

    // The DCS link was a pre-signed URL; neither its signature nor its
    // query reaches the log, even at trace level.
    let download = requests
        .iter()
        .find(|r| r.listener == Listener::Download && r.path.contains("/dcs-1/"))
        .expect("the DCS link was downloaded");
    assert!(download.path.contains("?AWSAccessKeyId="), "{download:?}");
    let signature = download
        .path
        .split("Signature=")
        .nth(1)
        .expect("a signature")
        .split('&')
        .next()
        .unwrap();
    assert!(signature.len() >= 16, "{signature}");
    let log = run.all();
    assert!(
        !log.contains(signature),
        "the DCS link's signature was logged"
    );
    assert!(
        !log.contains("AWSAccessKeyId"),
        "the DCS link's query was logged"
    );
    assert!(!log.contains(SK));
}

#[test]
fn the_daemon_picks_up_a_dcs_rotation_with_the_service_in_metrics_and_hook() {
    let mut env = fleet();
    env.sync.push_str("interval = \"1s\"\njitter = \"0s\"\n");
    env.instances
        .push("\n[server]\nlisten = \"127.0.0.1:0\"\n".into());
    let d = env.daemon(&[]);
    let all_synced = || {
        ["dds-1", "rds-1", "gem-1", "og-1", "dcs-1"]
            .iter()
            .all(|id| file(&env, id) == served(&env, id))
    };
    assert!(wait_until(WAIT, all_synced), "{}", d.log());
    assert!(
        wait_until(WAIT, || hook_services(&env, "dcs-1") == "dcs\n"),
        "{}",
        d.log()
    );

    let new = env.standin.rotate("dcs-1", "international");
    assert!(
        wait_until(WAIT, || file(&env, "dcs-1") == canonical(new.as_bytes())),
        "the rotation was not picked up\n{}",
        d.log()
    );
    assert!(
        wait_until(WAIT, || hook_services(&env, "dcs-1") == "dcs\ndcs\n"),
        "{:?}\n{}",
        hook_services(&env, "dcs-1"),
        d.log()
    );

    // The round's counts reach the metrics when the round ends, a moment
    // after the hook's file is written: wait for them.
    let addr = d.listen_addr(1);
    let scrape = || {
        http(addr, "GET", "/metrics", Duration::from_secs(5))
            .map(|r| r.1)
            .unwrap_or_default()
    };
    let counted = [
        "dds_certsync_cert_changes_total{instance=\"dcs-1\",service=\"dcs\",category=\"international\"} 2",
        "dds_certsync_hook_runs_total{instance=\"dcs-1\",service=\"dcs\",result=\"ok\"} 2",
    ];
    assert!(
        wait_until(WAIT, || {
            let m = scrape();
            counted.iter().all(|c| m.contains(c))
        }),
        "{}",
        scrape()
    );
    let metrics = scrape();
    for (service, id) in OTHERS {
        let series = format!(
            "dds_certsync_cert_not_after_timestamp_seconds{{instance=\"{id}\",service=\"{service}\",category=\"international\"}}"
        );
        assert!(metrics.contains(&series), "{series}\n{metrics}");
    }
}

#[test]
fn a_wrong_answer_shape_fails_naming_the_instance_and_category() {
    let mut env = Env::new();
    // The stand-in answers this instance as RDS; the config asks it as DDS.
    env.standin.add_instance(PROJECT, "mixed-1");
    env.standin.set_service("mixed-1", "rds");
    env.raw_instance("id = \"mixed-1\"\ninternational = \"out/mixed-1.crt\"\n");
    let run = env.once(&[]);
    assert_eq!(run.code, 1, "{}", run.all());
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("instance_id=mixed-1") && l.contains("failed"))
        .unwrap_or_else(|| panic!("no failure line\n{}", run.all()));
    assert!(line.contains("service=dds"), "{line}");
    assert!(line.contains("reason=api_bad_response"), "{line}");
    assert!(line.contains("certs"), "{line}");
    assert!(!env.path("out/mixed-1.crt").exists());
}

#[test]
fn config_errors_of_a_service_name_the_key() {
    let check = |block: &str, cloud: &str| {
        let mut env = Env::new();
        env.cloud = cloud.to_string();
        env.raw_instance(block);
        env.write_config();
        Run::from(env.command(&["--check"]).output().expect("run binary"))
    };
    let run = check(
        "id = \"x\"\nservice = \"redis\"\ninternational = \"out/x.crt\"\n",
        "",
    );
    run.assert_code(2);
    assert!(
        run.stderr.contains("instances[0].service"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("dds, rds, geminidb, opengauss, dcs"),
        "{}",
        run.stderr
    );
    let run = check(
        "id = \"x\"\nservice = \"dcs\"\ninternational = \"out/x.crt\"\nnational = \"out/y.crt\"\n",
        "[cloud.endpoints]\ndcs = \"https://127.0.0.1:1\"\n",
    );
    run.assert_code(2);
    assert!(
        run.stderr.contains("instances[0].national"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("dcs"), "{}", run.stderr);
    // The env's cloud.endpoint is DDS's: endpoints.dds as well is refused.
    let run = check(
        "id = \"x\"\ninternational = \"out/x.crt\"\n",
        "[cloud.endpoints]\ndds = \"https://127.0.0.1:1\"\n",
    );
    run.assert_code(2);
    assert!(run.stderr.contains("cloud.endpoints.dds"), "{}", run.stderr);
    // A service with neither region nor endpoint names what would do.
    let run = check(
        "id = \"x\"\nservice = \"rds\"\ninternational = \"out/x.crt\"\n",
        "",
    );
    run.assert_code(2);
    assert!(run.stderr.contains("cloud.endpoints.rds"), "{}", run.stderr);
}

/// A truststore and a grace period work for every service: an instance of
/// each non-DDS service, downloads in the services' forms, each writing its
/// `international` file and a truststore with `keep_previous`. After a
/// rotation of every one, each file holds the new CA then the previous one,
/// and keytool lists exactly those two in each store.
#[test]
fn a_truststore_and_a_grace_period_work_for_every_service() {
    const TEST: &str = "services::a_truststore_and_a_grace_period_work_for_every_service";
    let Some(jdk) = crate::support::jdk::Jdk::find(TEST) else {
        return;
    };
    const PASSWORD: &str = "Fleet-Truststore-Pass";
    let mut env = Env::new();
    every_endpoint_at_the_standin(&mut env);
    env.sync.push_str("keep_previous = \"30d\"\n");
    let forms = [Form::Zip, Form::Der, Form::Zip, Form::Zip];
    for ((service, id), form) in OTHERS.into_iter().zip(forms) {
        env.standin.add_instance(PROJECT, id);
        env.standin.set_service(id, service);
        env.standin.set_form(id, "international", form);
        env.raw_instance(&format!(
            "id = \"{id}\"\nservice = \"{service}\"\ninternational = \"out/{id}.crt\"\ntruststore = \"out/{id}.p12\"\ntruststore_password = \"{PASSWORD}\"\n"
        ));
    }
    env.write_config();
    env.command(&["--once"])
        .output()
        .map(Run::from)
        .unwrap()
        .assert_code(0);
    let first: Vec<String> = OTHERS
        .iter()
        .map(|(_, id)| env.standin.cert_pem(id, "international"))
        .collect();
    for (_, id) in OTHERS {
        env.standin.rotate(id, "international");
    }
    let run = env.command(&["--once"]).output().map(Run::from).unwrap();
    run.assert_code(0);
    for ((service, id), previous) in OTHERS.iter().zip(&first) {
        let now = env.standin.cert_pem(id, "international");
        let expected = [canonical(now.as_bytes()), canonical(previous.as_bytes())].concat();
        assert_eq!(file(&env, id), expected, "{service}: {}", run.all());
        assert_eq!(
            jdk.keytool_list(&env.path(&format!("out/{id}.p12")), PASSWORD),
            Ok(crate::truststore::expected_entries(&[
                now,
                previous.clone()
            ])),
            "{service}"
        );
    }
}
