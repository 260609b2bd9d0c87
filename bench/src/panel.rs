//! The admin panel's pages at scale: server time per page (the app driven
//! in-process, no network, as a request reaches it after the socket),
//! beside a plain indexed `SELECT` of the rows the page shows, on a scratch
//! database seeded with 1 000 000 licenses and 100 000 customers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode, header};
use latchkey_control::app::{self, AppState};
use latchkey_control::config::Config;
use latchkey_control::context::RequestContext;
use latchkey_control::db::admins::{self, Role};
use sqlx::PgPool;
use tower::ServiceExt;
use uuid::Uuid;

use crate::scratch::ScratchDatabase;
use crate::seed;

const PASSWORD: &str = "bench-password-for-the-panel";

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    licenses: u64,
    #[arg(long, default_value_t = 100_000)]
    customers: u64,
    /// Requests per page (and queries per reference); p50 and p95 over these.
    #[arg(long, default_value_t = 200)]
    requests: usize,
}

pub async fn run(server_url: &str, args: Args) -> anyhow::Result<()> {
    let db = ScratchDatabase::create(server_url, 8).await?;
    let result = race(server_url, &db.pool, &args).await;
    db.drop().await?;
    result
}

/// One page: the panel's path (`{customer}` and `{license}` are replaced
/// by a different seeded row on every request) and its reference query,
/// which takes the same row's id as `$1` when the path names one.
struct Page {
    name: &'static str,
    path: &'static str,
    reference: &'static str,
}

const PAGES: &[Page] = &[
    Page {
        name: "customers",
        path: "/customers",
        reference: "SELECT id, name, email, company, created_at FROM customers
                     ORDER BY created_at DESC, id DESC LIMIT 50",
    },
    Page {
        name: "customers search",
        path: "/customers?q=company%2042",
        reference: "SELECT id, name, email, company FROM customers
                     WHERE name ILIKE '%company 42%' OR email ILIKE '%company 42%'
                        OR company ILIKE '%company 42%'
                     ORDER BY created_at DESC, id DESC LIMIT 50",
    },
    Page {
        name: "autocomplete",
        path: "/customers/suggest?q=customer%20777",
        reference: "SELECT id, name, email FROM customers
                     WHERE name ILIKE '%customer 777%' OR email ILIKE '%customer 777%'
                     LIMIT 10",
    },
    Page {
        name: "customer page",
        path: "/customers/{customer}",
        reference: "SELECT c.id, c.name, l.id, l.status FROM customers c
                      LEFT JOIN licenses l ON l.customer_id = c.id
                     WHERE c.id = $1 LIMIT 50",
    },
    Page {
        name: "licenses",
        path: "/licenses",
        reference: "SELECT id, key_prefix, customer_id, status, valid_until FROM licenses
                     ORDER BY created_at DESC, id DESC LIMIT 50",
    },
    Page {
        name: "licenses suspended",
        path: "/licenses?status=suspended",
        reference: "SELECT id, key_prefix, customer_id, status, valid_until FROM licenses
                     WHERE status = 'suspended' ORDER BY created_at DESC, id DESC LIMIT 50",
    },
    Page {
        name: "licenses expiring 30 d",
        path: "/licenses?expiring_within_days=30",
        reference: "SELECT id, key_prefix, customer_id, status, valid_until FROM licenses
                     WHERE status = 'active' AND valid_until < now() + interval '30 days'
                     ORDER BY valid_until, id LIMIT 50",
    },
    Page {
        name: "license page",
        path: "/licenses/{license}",
        reference: "SELECT l.id, l.status, d.id FROM licenses l
                      LEFT JOIN devices d ON d.license_id = l.id
                     WHERE l.id = $1",
    },
    Page {
        name: "sessions",
        path: "/sessions",
        reference: "SELECT id, license_id, started_at, last_heartbeat_at FROM sessions
                     WHERE ended_at IS NULL ORDER BY started_at DESC LIMIT 100",
    },
    Page {
        name: "audit",
        path: "/audit",
        reference: "SELECT id, at, action, entity_kind, entity_id FROM audit_log
                     ORDER BY at DESC, id DESC LIMIT 50",
    },
];

async fn race(server_url: &str, pool: &PgPool, args: &Args) -> anyhow::Result<()> {
    let seeding = Instant::now();
    seed::licensing(pool, args.customers, args.licenses).await?;
    println!(
        "panel: seeded {} customers, {} licenses (a device each for a third, \
         an audit row each), 500 open sessions in {:.1?}",
        args.customers,
        args.licenses,
        seeding.elapsed()
    );
    let samples = Samples::load(pool, args.requests).await?;
    let mut panel = Panel::logged_in(server_url, pool).await?;

    println!(
        "{:<24} {:>9} {:>9}   {:>9} {:>9}   {:>7}",
        "page", "p50 ms", "p95 ms", "ref p50", "ref p95", "p95/ref"
    );
    let mut worst = 0.0_f64;
    for page in PAGES {
        let mut served = Vec::with_capacity(args.requests);
        let mut referenced = Vec::with_capacity(args.requests);
        for n in 0..args.requests {
            let (path, id) = samples.fill(page.path, n);
            served.push(panel.time(&path).await.with_context(|| page.name)?);
            referenced.push(time_reference(pool, page.reference, id).await?);
        }
        let (p50, p95) = percentiles(&mut served);
        let (r50, r95) = percentiles(&mut referenced);
        worst = worst.max(p95);
        println!(
            "{:<24} {:>9.2} {:>9.2}   {:>9.2} {:>9.2}   {:>7.1}",
            page.name,
            p50,
            p95,
            r50,
            r95,
            p95 / r95.max(0.001)
        );
    }
    println!("worst page p95: {worst:.2} ms (target 100 ms)");
    Ok(())
}

/// Seeded rows' ids that requests take in turn.
struct Samples {
    customers: Vec<Uuid>,
    licenses: Vec<Uuid>,
}

impl Samples {
    async fn load(pool: &PgPool, n: usize) -> anyhow::Result<Self> {
        let customers = sqlx::query_scalar("SELECT id FROM customers ORDER BY random() LIMIT $1")
            .bind(n as i64)
            .fetch_all(pool)
            .await?;
        let licenses = sqlx::query_scalar("SELECT id FROM licenses ORDER BY random() LIMIT $1")
            .bind(n as i64)
            .fetch_all(pool)
            .await?;
        anyhow::ensure!(
            !customers.is_empty() && !licenses.is_empty(),
            "no seeded rows sampled"
        );
        Ok(Self {
            customers,
            licenses,
        })
    }

    /// The path for the `n`th request and the row it names, if any.
    fn fill(&self, path: &str, n: usize) -> (String, Option<Uuid>) {
        for (marker, ids) in [
            ("{customer}", &self.customers),
            ("{license}", &self.licenses),
        ] {
            if path.contains(marker) {
                let id = ids[n % ids.len()];
                return (path.replace(marker, &id.to_string()), Some(id));
            }
        }
        (path.to_owned(), None)
    }
}

/// The panel app in this process, with a logged-in admin's cookies.
struct Panel {
    app: Router,
    cookie: String,
}

impl Panel {
    async fn logged_in(server_url: &str, pool: &PgPool) -> anyhow::Result<Self> {
        let env: BTreeMap<String, String> = [
            ("DATABASE_URL", server_url),
            (
                "SECRET_KEY",
                "bench-secret-key-bench-secret-key-bench-secret",
            ),
            ("JWT_SECRET", "bench-jwt-secret-bench-jwt-secret-bench-jwt"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = Config::from_layers(None, &env)?;
        admins::create(
            pool,
            &RequestContext::system("bench"),
            "bench",
            PASSWORD,
            Role::Admin,
        )
        .await?;
        let app = app::router(AppState::new(pool.clone(), &config)?)
            .layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        let mut panel = Self {
            app,
            cookie: String::new(),
        };
        let login = panel
            .send(Request::get("/login").body(Body::empty())?)
            .await?;
        let csrf = field(&login.1, "_csrf").context("the login form's CSRF token")?;
        let form = format!("_csrf={csrf}&username=bench&password={PASSWORD}");
        let (status, _) = panel
            .send(
                Request::post("/login")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(form))?,
            )
            .await?;
        anyhow::ensure!(status == StatusCode::SEE_OTHER, "login answered {status}");
        Ok(panel)
    }

    /// Milliseconds from the request to the whole page body.
    async fn time(&mut self, path: &str) -> anyhow::Result<f64> {
        let started = Instant::now();
        let (status, _) = self.send(Request::get(path).body(Body::empty())?).await?;
        let elapsed = started.elapsed();
        anyhow::ensure!(status == StatusCode::OK, "GET {path} answered {status}");
        Ok(ms(elapsed))
    }

    /// Sends with the cookies held and keeps the ones set.
    async fn send(&mut self, mut request: Request<Body>) -> anyhow::Result<(StatusCode, String)> {
        if !self.cookie.is_empty() {
            request
                .headers_mut()
                .insert(header::COOKIE, self.cookie.parse()?);
        }
        let response = self.app.clone().oneshot(request).await?;
        let status = response.status();
        let set: Vec<String> = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .filter_map(|value| value.split(';').next())
            .map(str::to_owned)
            .collect();
        if !set.is_empty() {
            let mut jar: BTreeMap<String, String> = self
                .cookie
                .split("; ")
                .chain(set.iter().map(String::as_str))
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            jar.retain(|_, v| !v.is_empty());
            self.cookie = jar
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
        }
        let body = axum::body::to_bytes(response.into_body(), 1 << 26).await?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// The value of the first `name="{name}"` input of a page.
fn field(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    let end = page[start..].find('"')? + start;
    Some(page[start..end].to_owned())
}

async fn time_reference(pool: &PgPool, sql: &str, id: Option<Uuid>) -> anyhow::Result<f64> {
    let started = Instant::now();
    let query = sqlx::query(sql);
    let query = match id {
        Some(id) => query.bind(id),
        None => query,
    };
    query.fetch_all(pool).await?;
    Ok(ms(started.elapsed()))
}

fn ms(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1000.0
}

/// p50 and p95 of `times`, in the same unit.
fn percentiles(times: &mut [f64]) -> (f64, f64) {
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    (at(0.50), at(0.95))
}
