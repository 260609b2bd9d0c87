//! `/monitoring`: what an admin needs without opening Grafana. The edges
//! with how far behind each is, the alerts firing (Alertmanager's, when
//! `panel.alertmanager_url` is set, else computed here from the database
//! by the conditions of `deploy/prometheus/rules`), this replica's request
//! and error rates as a server-rendered SVG chart, and links to Grafana.

use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use time::OffsetDateTime;

use super::error::PanelResult;
use super::pages::{Layout, when};
use super::session::Viewer;
use crate::db::monitoring::{self, Facts};
use crate::panel::PanelState;
use crate::traffic::Rate;

/// An edge unseen this long is down (the rule's `for: 2m`).
const EDGE_DOWN_SECS: i64 = 120;
/// Propagation lag and publisher lag past which their alerts fire.
const LAG_SECS: f64 = 60.0;
/// Failed logins in 15 minutes that make a burst.
const LOGIN_BURST: i64 = 20;
const ALERTMANAGER_TIMEOUT: Duration = Duration::from_secs(2);
/// Alertmanager's answer is read up to this size.
const ALERTMANAGER_MAX_BYTES: usize = 1 << 20;

#[derive(Debug, Template, WebTemplate)]
#[template(path = "monitoring.html")]
pub struct MonitoringPage {
    layout: Layout,
    edges: Vec<EdgeRow>,
    alerts: Vec<Alert>,
    /// Where the alerts come from, as the page says it.
    alert_source: &'static str,
    /// Why Alertmanager could not be read (the computed alerts are shown).
    alertmanager_error: Option<String>,
    chart: Chart,
    outbox_pending: i64,
    grafana_url: Option<String>,
    read_at: String,
}

#[derive(Debug)]
struct EdgeRow {
    name: String,
    version: String,
    connected: bool,
    last_seen: String,
    sequence: String,
    behind: i64,
    lag: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub name: String,
    pub severity: String,
    pub summary: String,
    pub since: String,
}

/// The chart's polylines in a 600 × 120 box, newest at the right.
#[derive(Debug)]
struct Chart {
    requests: String,
    errors: String,
    /// The top of the scale, requests per second.
    max: String,
    latest_requests: String,
    latest_errors: String,
    /// How many minutes the chart spans.
    minutes: i64,
}

pub async fn page(viewer: Viewer, State(state): State<PanelState>) -> PanelResult<MonitoringPage> {
    let facts = monitoring::facts(&state.pool).await?;
    let (alerts, alert_source, alertmanager_error) = match &state.config.alertmanager_url {
        Some(url) => match alertmanager_alerts(url).await {
            Ok(alerts) => (alerts, "Alertmanager", None),
            Err(error) => (
                computed(&facts),
                "control (Alertmanager did not answer)",
                Some(error),
            ),
        },
        None => (computed(&facts), "control", None),
    };
    let now = facts.read_at;
    let edges = facts
        .edges
        .iter()
        .map(|edge| EdgeRow {
            name: edge.name.clone(),
            version: edge.version.clone().unwrap_or_else(|| "—".into()),
            connected: edge
                .last_seen_at
                .is_some_and(|at| (now - at).whole_seconds() < EDGE_DOWN_SECS),
            last_seen: edge
                .last_seen_at
                .as_ref()
                .map_or_else(|| "never".into(), when),
            sequence: edge
                .snapshot_sequence
                .map_or_else(|| "—".into(), |s| format!("#{s}")),
            behind: edge.behind,
            lag: format!("{:.0} s", edge.lag_secs),
        })
        .collect();
    Ok(MonitoringPage {
        layout: Layout::new(&viewer, "Monitoring", "/monitoring"),
        edges,
        alerts,
        alert_source,
        alertmanager_error,
        chart: chart(&state.traffic.rates()),
        outbox_pending: facts.outbox_pending,
        grafana_url: state.config.grafana_url.clone(),
        read_at: when(&now),
    })
}

/// The alerts the Prometheus rules would fire that the database can tell,
/// named as those rules name them.
pub fn computed(facts: &Facts) -> Vec<Alert> {
    let since = when(&facts.read_at);
    let alert = |name: &str, severity: &str, summary: String| Alert {
        name: name.into(),
        severity: severity.into(),
        summary,
        since: since.clone(),
    };
    let mut alerts = Vec::new();
    for edge in &facts.edges {
        let silent = edge
            .last_seen_at
            .is_none_or(|at| (facts.read_at - at).whole_seconds() >= EDGE_DOWN_SECS);
        if silent {
            alerts.push(alert(
                "LatchkeyEdgeLinkDown",
                "critical",
                format!(
                    "edge {} has not been heard from for {EDGE_DOWN_SECS} s or more",
                    edge.name
                ),
            ));
        } else if edge.lag_secs > LAG_SECS {
            alerts.push(alert(
                "LatchkeyPropagationLag",
                "warning",
                format!(
                    "edge {} is {} snapshot(s) and {:.0} s behind",
                    edge.name, edge.behind, edge.lag_secs
                ),
            ));
        }
    }
    if facts.outbox_oldest_secs > LAG_SECS {
        alerts.push(alert(
            "LatchkeyPublisherLagging",
            "critical",
            format!(
                "{} change(s) unpublished, the oldest {:.0} s old",
                facts.outbox_pending, facts.outbox_oldest_secs
            ),
        ));
    }
    if !facts.next_month_partition {
        alerts.push(alert(
            "LatchkeyHeartbeatPartitionMissing",
            "warning",
            "next month's heartbeat partition does not exist yet".into(),
        ));
    }
    if facts.failed_logins > LOGIN_BURST {
        alerts.push(alert(
            "LatchkeyLoginFailureBurst",
            "warning",
            format!("{} failed logins in 15 minutes", facts.failed_logins),
        ));
    }
    if facts.automatic_blocks > 0 {
        alerts.push(alert(
            "LatchkeyNetworkBlocked",
            "info",
            format!(
                "{} network(s) blocked for failed logins in the last hour",
                facts.automatic_blocks
            ),
        ));
    }
    alerts
}

/// One alert of Alertmanager's `GET /api/v2/alerts`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FiringAlert {
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
    starts_at: String,
}

/// The active, unsilenced, uninhibited alerts at `base`.
async fn alertmanager_alerts(base: &str) -> Result<Vec<Alert>, String> {
    let uri = format!("{base}/api/v2/alerts?active=true&silenced=false&inhibited=false");
    let client = Client::builder(TokioExecutor::new()).build_http::<String>();
    let request = hyper::Request::get(&uri)
        .header(hyper::header::ACCEPT, "application/json")
        .body(String::new())
        .map_err(|e| e.to_string())?;
    let answer = tokio::time::timeout(ALERTMANAGER_TIMEOUT, async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("{uri} answered {}", response.status()));
        }
        let body = http_body_util::Limited::new(response.into_body(), ALERTMANAGER_MAX_BYTES)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        serde_json::from_slice::<Vec<FiringAlert>>(&body).map_err(|e| e.to_string())
    })
    .await
    .map_err(|_| format!("{uri} did not answer within {ALERTMANAGER_TIMEOUT:?}"))??;
    let mut alerts: Vec<Alert> = answer
        .into_iter()
        .map(|firing| Alert {
            name: firing.labels.get("alertname").cloned().unwrap_or_default(),
            severity: firing.labels.get("severity").cloned().unwrap_or_default(),
            summary: firing
                .annotations
                .get("summary")
                .or_else(|| firing.annotations.get("description"))
                .cloned()
                .unwrap_or_default(),
            since: OffsetDateTime::parse(
                &firing.starts_at,
                &time::format_description::well_known::Rfc3339,
            )
            .map_or(firing.starts_at, |at| when(&at)),
        })
        .collect();
    alerts.sort_by(|a, b| (&a.severity, &a.name).cmp(&(&b.severity, &b.name)));
    Ok(alerts)
}

fn chart(rates: &[Rate]) -> Chart {
    const WIDTH: f64 = 600.0;
    const HEIGHT: f64 = 120.0;
    let max = rates
        .iter()
        .map(|rate| rate.requests)
        .fold(1.0_f64, f64::max);
    let span = (rates.len().max(2) - 1) as f64;
    let points = |value: fn(&Rate) -> f64| {
        rates
            .iter()
            .enumerate()
            .map(|(i, rate)| {
                let x = WIDTH * i as f64 / span;
                let y = HEIGHT - HEIGHT * value(rate) / max;
                format!("{x:.1},{y:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let latest = rates.last();
    Chart {
        requests: points(|rate| rate.requests),
        errors: points(|rate| rate.server_errors),
        max: format!("{max:.1}"),
        latest_requests: latest.map_or_else(|| "—".into(), |r| format!("{:.2}", r.requests)),
        latest_errors: latest.map_or_else(|| "—".into(), |r| format!("{:.2}", r.server_errors)),
        minutes: rates
            .first()
            .zip(latest)
            .map_or(0, |(first, last)| (last.at - first.at + 59) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_scales_to_its_busiest_moment() {
        let rates = [
            Rate {
                at: 10,
                requests: 2.0,
                server_errors: 0.0,
            },
            Rate {
                at: 20,
                requests: 4.0,
                server_errors: 1.0,
            },
        ];
        let chart = chart(&rates);
        assert_eq!(chart.requests, "0.0,60.0 600.0,0.0");
        assert_eq!(chart.errors, "0.0,120.0 600.0,90.0");
        assert_eq!(chart.max, "4.0");
        assert_eq!(chart.latest_errors, "1.00");
        assert_eq!(chart.minutes, 1);
        assert_eq!(super::chart(&[]).requests, "");
    }
}
