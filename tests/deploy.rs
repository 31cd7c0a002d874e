//! The deployment files stay consistent: compose and Kubernetes YAML parse, probes point at
//! /healthz and /readyz, and the configurations they mount pass `hookbridge check`.

use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

fn load(path: &str) -> Vec<Yaml> {
    let text = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).expect(path);
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn check(config_path: &std::path::Path, env: &[(&str, &str)]) {
    let out = Command::new(env!("CARGO_BIN_EXE_hookbridge"))
        .args(["check", "--config"])
        .arg(config_path)
        .env_remove("HOOKBRIDGE_CONFIG")
        .envs(env.iter().copied())
        .output()
        .expect("check");
    assert!(
        out.status.success(),
        "{}: {}",
        config_path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Kafka sink's topic in a config text.
fn config_topic(text: &str) -> String {
    let table = &text[text.find("[sinks.kafka]").expect("kafka sink")..];
    let line = table.lines().find(|l| l.starts_with("topic")).expect("topic");
    line.split('"').nth(1).expect("quoted").to_owned()
}

#[test]
fn compose_mounts_a_valid_config_and_runs_every_broker() {
    let docs = load("docker/compose.yaml");
    let services = &docs[0]["services"];
    for s in ["hookbridge", "kafka", "rabbitmq", "nats"] {
        assert!(!services[s].is_badvalue(), "service {s} missing");
    }
    let hb = &services["hookbridge"];
    assert_eq!(hb["build"]["dockerfile"].as_str(), Some("docker/Dockerfile"));
    let test = hb["healthcheck"]["test"].as_vec().expect("healthcheck");
    let probe_url = test
        .iter()
        .filter_map(Yaml::as_str)
        .find(|s| s.ends_with("/healthz"))
        .expect("a /healthz health check")
        .to_owned();
    // The config the compose file mounts passes `check`.
    let mount = hb["volumes"]
        .as_vec()
        .expect("volumes")
        .iter()
        .filter_map(Yaml::as_str)
        .find(|v| v.contains("/etc/hookbridge/hookbridge.toml"))
        .expect("config mount");
    let local = mount.split(':').next().expect("source");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docker")
        .join(local);
    check(&path, &[]);
    // And it routes FIC events to all four sinks, with the probes on their own listener, which
    // both the compose health check and the image's HEALTHCHECK ask.
    let text = std::fs::read_to_string(&path).expect("config");
    assert!(text.contains("sinks = [\"kafka\", \"rabbitmq\", \"nats\", \"archive\"]"));
    let config = hookbridge::config::load(Some(&path)).expect("config");
    let probe_port = config.server.probe_listen.expect("server.probe_listen").port();
    assert!(config.dedup.path.is_some(), "durable dedup in the shipped config");
    assert_eq!(probe_url, format!("http://127.0.0.1:{probe_port}/healthz"));
    let root = env!("CARGO_MANIFEST_DIR");
    let dockerfile = std::fs::read_to_string(format!("{root}/docker/Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains("USER 10001")
            && dockerfile.contains("HEALTHCHECK")
            && dockerfile.matches("FROM ").count() >= 2
    );
    assert!(
        dockerfile.contains(&probe_url),
        "the image's HEALTHCHECK asks {probe_url}"
    );
    // The dependencies are built in a layer before the source is copied in.
    let lock = dockerfile
        .find("COPY Cargo.toml Cargo.lock")
        .expect("manifests copied first");
    let deps = dockerfile.find("cargo build").expect("a build");
    let source = dockerfile.find("COPY . .").expect("source copied");
    assert!(lock < deps && deps < source, "dependency layer before the source");
    // What the build context leaves out.
    let ignore = std::fs::read_to_string(format!("{root}/.dockerignore")).expect(".dockerignore");
    let ignored: Vec<&str> = ignore.lines().map(str::trim).collect();
    for p in [".git", "target", "fuzz/target", "fuzz/work", "bench/results"] {
        assert!(ignored.contains(&p), ".dockerignore lacks {p}");
    }
    // The Kafka topic is created before hookbridge starts.
    let init = &services["kafka-init"];
    assert!(init["command"][0]
        .as_str()
        .is_some_and(|c| c.contains("--create") && c.contains(&config_topic(&text))));
    assert_eq!(
        hb["depends_on"]["kafka-init"]["condition"].as_str(),
        Some("service_completed_successfully")
    );
}

#[test]
fn kubernetes_sidecar_probes_config_and_secrets() {
    let docs = load("docker/k8s/sidecar.yaml");
    let by_kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"].as_str() == Some(k))
            .unwrap_or_else(|| panic!("{k}"))
    };
    let deployment = by_kind("Deployment");
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_vec()
        .expect("containers");
    assert!(containers.len() >= 2, "a sidecar next to the app");
    let hb = containers
        .iter()
        .find(|c| c["name"].as_str() == Some("hookbridge"))
        .expect("hookbridge container");
    assert_eq!(hb["livenessProbe"]["httpGet"]["path"].as_str(), Some("/healthz"));
    assert_eq!(hb["readinessProbe"]["httpGet"]["path"].as_str(), Some("/readyz"));
    // Both on the probe listener: the named port is the one the ConfigMap's probe_listen binds.
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(hb[probe]["httpGet"]["port"].as_str(), Some("probes"), "{probe}");
    }
    let probes_port = hb["ports"]
        .as_vec()
        .expect("ports")
        .iter()
        .find(|p| p["name"].as_str() == Some("probes"))
        .and_then(|p| p["containerPort"].as_i64())
        .expect("a port named probes");
    let env = hb["env"].as_vec().expect("env");
    assert!(
        env.iter().any(|e| !e["valueFrom"]["secretKeyRef"].is_badvalue()),
        "secrets from a Secret"
    );

    // The ConfigMap's config passes `check` with the Secret's values in place.
    let config = by_kind("ConfigMap")["data"]["hookbridge.toml"]
        .as_str()
        .expect("config")
        .to_owned();
    assert!(
        config.contains(&format!("probe_listen = \"0.0.0.0:{probes_port}\"")),
        "the ConfigMap binds the probes where the probes ask"
    );
    let secret = by_kind("Secret");
    let dir = tempfile::tempdir().expect("dir");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).expect("mkdir");
    std::fs::write(
        secrets.join("github-secret"),
        secret["stringData"]["github-secret"].as_str().expect("gh"),
    )
    .expect("write");
    let config = config.replace("/etc/hookbridge/secrets", &secrets.display().to_string());
    let path = dir.path().join("hookbridge.toml");
    std::fs::write(&path, config).expect("write");
    let amqp = secret["stringData"]["amqp-url"].as_str().expect("amqp");
    check(&path, &[("AMQP_URL", amqp)]);
}
