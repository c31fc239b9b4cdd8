//! The deployment material, checked without a container engine (none runs on the test
//! machines): deploy/compose.yaml parses and its nodes' settings load as Jibber's settings, the
//! proxy pins clients to nodes, every service has a health check, and the Dockerfile builds in
//! stages and runs as a non-root user with a health check.

use std::collections::BTreeSet;
use std::path::PathBuf;

use jibber_server::{Settings, Sources};
use serde_yaml_ng::Value;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn compose() -> Value {
    let mut doc: Value = serde_yaml_ng::from_str(&read("deploy/compose.yaml")).expect("YAML");
    doc.apply_merge().expect("merge keys");
    doc
}

/// `${NAME:-default}` → default (compose's substitution, for the values checked here).
fn substitute(value: &str) -> String {
    let mut out = value.to_owned();
    while let Some(start) = out.find("${") {
        let end = start + out[start..].find('}').expect("closed ${");
        let inner = &out[start + 2..end];
        let default = inner.split_once(":-").map_or("", |(_, d)| d).to_owned();
        out.replace_range(start..=end, &default);
    }
    out
}

/// `KEY=value` lines of an env file (comments and blanks skipped).
fn env_file(path: &str) -> Vec<(String, String)> {
    read(path)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=value");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn the_compose_file_runs_two_nodes_on_postgres_and_redis_behind_a_sticky_proxy() {
    let doc = compose();
    let services = doc["services"].as_mapping().expect("services");
    let names: BTreeSet<&str> = services.keys().filter_map(Value::as_str).collect();
    for needed in ["postgres", "redis", "jibber1", "jibber2", "proxy"] {
        assert!(names.contains(needed), "service {needed} in {names:?}");
    }
    for (name, service) in services {
        assert!(
            service["healthcheck"]["test"].is_sequence(),
            "{name:?} has a health check"
        );
    }
    // The example env file with secrets filled in, plus each node's environment, loads as valid
    // production settings: every key is a real setting and every value parses.
    let mut base = env_file("deploy/jibber.env.example");
    for (k, v) in &mut base {
        if k == "JIBBER_JWT_SECRET" {
            *v = jibber_server::auth::tokens::new_jwt_secret();
        } else if k == "JIBBER_OPAQUE_SERVER_SETUP" {
            *v = jibber_server::auth::opaque::new_server_setup();
        }
    }
    let mut node_ids = BTreeSet::new();
    for node in ["jibber1", "jibber2"] {
        let service = &doc["services"][node];
        assert_eq!(service["env_file"].as_str(), Some("jibber.env"));
        assert_eq!(service["build"]["dockerfile"].as_str(), Some("Dockerfile"));
        assert!(repo("Dockerfile").is_file());
        for dep in ["postgres", "redis"] {
            assert_eq!(
                service["depends_on"][dep]["condition"].as_str(),
                Some("service_healthy"),
                "{node} waits for {dep}"
            );
        }
        let mut env = base.clone();
        for (k, v) in service["environment"].as_mapping().expect("environment") {
            env.push((
                k.as_str().expect("key").to_owned(),
                substitute(v.as_str().expect("string value")),
            ));
        }
        let settings = Settings::load(&Sources {
            env: env.clone(),
            ..Sources::default()
        })
        .unwrap_or_else(|e| panic!("{node}: {e}"));
        assert!(settings.is_production());
        assert!(settings.trust_proxy, "{node} sits behind the proxy");
        assert!(settings.database_url.starts_with("postgres://"));
        assert!(settings.database_url.contains("@postgres:5432/"));
        assert_eq!(settings.redis_url.as_deref(), Some("redis://redis:6379"));
        assert_eq!(settings.port, 8080);
        node_ids.insert(settings.node_id);
        let health = service["healthcheck"]["test"]
            .as_sequence()
            .expect("test")
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(health.contains("127.0.0.1:8080/api/v1/health"), "{health}");
    }
    assert_eq!(node_ids.len(), 2, "each node has its own id");

    // The proxy publishes one port and pins each client to a node (long-polling needs it).
    let ports = doc["services"]["proxy"]["ports"]
        .as_sequence()
        .expect("ports");
    assert_eq!(ports[0].as_str(), Some("8080:8080"));
    let haproxy = read("deploy/haproxy.cfg");
    assert!(haproxy.contains("bind :8080"));
    assert!(
        haproxy.contains("cookie JIBBER_NODE insert"),
        "sticky sessions"
    );
    for node in [
        "jibber1:8080 check cookie node1",
        "jibber2:8080 check cookie node2",
    ] {
        assert!(haproxy.contains(node), "{node}");
    }
    assert!(haproxy.contains("option httpchk GET /api/v1/ready"));
}

#[test]
fn the_dockerfile_builds_in_stages_and_runs_unprivileged_with_a_health_check() {
    let text = read("Dockerfile");
    // Instructions, with continuation lines joined.
    let joined = text.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let stages: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("FROM "))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    assert!(lines[stages[0]].ends_with(" AS build"));
    let build = &lines[stages[0]..stages[1]];
    assert!(
        build
            .iter()
            .any(|l| l.contains("cargo build --release --locked -p jibber-cli")),
        "{build:?}"
    );
    let runtime = &lines[stages[1]..];
    assert!(
        runtime
            .iter()
            .any(|l| l.starts_with("COPY --from=build /out/jibber "))
    );
    let user = runtime
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER in the runtime stage");
    assert!(!matches!(user.trim(), "root" | "0"), "runs as {user}");
    assert!(
        runtime
            .iter()
            .any(|l| l.contains("useradd") && l.contains("jibber")),
        "the user exists"
    );
    let health = runtime
        .iter()
        .find(|l| l.starts_with("HEALTHCHECK "))
        .expect("HEALTHCHECK");
    assert!(
        health.contains("http://127.0.0.1:8080/api/v1/health"),
        "{health}"
    );
    assert!(runtime.contains(&"EXPOSE 8080"));
    assert!(runtime.contains(&"ENTRYPOINT [\"jibber\"]"));
    // The health check's tool is installed in the runtime image.
    assert!(
        runtime
            .iter()
            .any(|l| l.contains("apt-get install") && l.contains("curl"))
    );
    // Every JIBBER_ variable the image sets is a real setting.
    for l in runtime.iter().filter(|l| l.starts_with("ENV ")) {
        for word in l.split_whitespace().filter(|w| w.starts_with("JIBBER_")) {
            let key = word.split('=').next().expect("key")[7..].to_ascii_lowercase();
            assert!(
                jibber_server::config::SPECS.iter().any(|s| s.key == key),
                "{word} is a setting"
            );
        }
    }
}
