//! Sessions: a live monitor of every open session, filtered by product and
//! customer, and terminating one or a selection (admin role, confirmed on a
//! page of its own, each session audited by `db::sessions::terminate`,
//! whose outbox row carries the end to every edge).
//!
//! The list is rendered with the page, then kept current by an event
//! stream (`/events/sessions`, the same filter) that `app.js` merges row by
//! row. Each stream is its own pull-based loop: it looks every
//! [`LIVE_EVERY`], sends the rows only when they changed, and is not polled
//! while its browser reads slowly, so a slow browser costs nothing and
//! holds up no other (ticks it missed are skipped, never queued).

use std::convert::Infallible;
use std::str::FromStr;
use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::{Stream, stream};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::download::FormatQuery;
use super::error::{PanelError, PanelResult};
use super::exports;
use super::pages::Layout;
use super::session::{AdminUser, Viewer, still_live};
use crate::db::sessions::{self, LiveFilter, OpenSession};
use crate::db::{customers, products};
use crate::error::{DomainError, DomainResult, Entity};
use crate::panel::PanelState;

/// Sessions listed at most; the rest are counted.
pub const SHOWN: u32 = 200;
/// Customers the filter offers (those with an open session, by name).
const CUSTOMER_CHOICES: u32 = 500;
/// How often a stream looks for changes.
pub const LIVE_EVERY: Duration = Duration::from_secs(1);
/// The form field naming a selected session (repeated).
const SESSION_FIELD: &str = "session";

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    pub product: String,
    pub customer: String,
    /// After a terminate: how many ended, how many had already ended.
    pub terminated: String,
    pub already_ended: String,
}

impl ListQuery {
    fn filter(&self) -> PanelResult<LiveFilter> {
        filter_of(&self.product, &self.customer)
    }
}

/// One select's option.
#[derive(Debug)]
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// A session as a row shows it.
#[derive(Debug)]
pub struct Row {
    pub session: OpenSession,
    pub device: String,
    /// "4 min 12 s" past the heartbeat deadline, if it is.
    pub overdue: Option<String>,
}

/// What the live part of the page shows: rendered with the page and by
/// every event of its stream (`sessions_live.html`).
#[derive(Debug)]
pub struct Live {
    pub rows: Vec<Row>,
    pub total: i64,
    pub overdue: i64,
    /// Matching sessions not listed.
    pub more: i64,
    pub is_admin: bool,
    pub filtered: bool,
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "sessions.html")]
pub struct ListPage {
    layout: Layout,
    products: Vec<Choice>,
    customers: Vec<Choice>,
    live: Live,
    /// The event stream, with the page's filter.
    stream: String,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "sessions_live.html")]
struct LiveFragment<'a> {
    live: &'a Live,
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "sessions_terminate.html")]
pub struct ConfirmPage {
    layout: Layout,
    rows: Vec<Row>,
    /// Selected sessions that are no longer open.
    gone: usize,
    product: String,
    customer: String,
    /// Where "Cancel" goes: the list with its filter.
    back: String,
}

pub async fn list(
    viewer: Viewer,
    State(state): State<PanelState>,
    Query(query): Query<ListQuery>,
) -> PanelResult<ListPage> {
    let filter = query.filter()?;
    let products = products::list(&state.pool)
        .await?
        .into_iter()
        .map(|product| Choice {
            value: product.id.to_string(),
            selected: filter.product_id == Some(product.id),
            label: product.name,
        })
        .collect();
    let mut offered = sessions::live_customers(&state.pool, CUSTOMER_CHOICES).await?;
    if let Some(id) = filter
        .customer_id
        .filter(|id| !offered.iter().any(|(c, _)| c == id))
    {
        // Filtered by a customer with no open session now: still offered.
        offered.insert(0, (id, customers::get(&state.pool, id).await?.name));
    }
    let customers = offered
        .into_iter()
        .map(|(id, name)| Choice {
            value: id.to_string(),
            selected: filter.customer_id == Some(id),
            label: name,
        })
        .collect();
    let query_string = filter_query(&filter);
    Ok(ListPage {
        live: live(&state, filter, viewer.is_admin()).await?,
        layout: Layout::new(&viewer, "Sessions", "/sessions"),
        products,
        customers,
        stream: with_query("/events/sessions", &query_string),
        notice: notice(&query),
    })
}

/// The live rows as `sessions` events: sent when they change, looked at
/// every [`LIVE_EVERY`], ending with the viewer's session.
pub async fn events(
    viewer: Viewer,
    State(state): State<PanelState>,
    Query(query): Query<ListQuery>,
) -> PanelResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let filter = query.filter()?;
    let is_admin = viewer.is_admin();
    let mut ticks = tokio::time::interval(LIVE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let start = (state, viewer.session.id_hash.clone(), ticks, String::new());
    let events = stream::unfold(start, move |(state, id_hash, mut ticks, sent)| async move {
        loop {
            ticks.tick().await;
            if !still_live(&state, &id_hash).await {
                return None;
            }
            let html = match live(&state, filter, is_admin).await.map(render) {
                Ok(html) => html,
                Err(error) => {
                    tracing::warn!(%error, "live sessions failed");
                    let event = Event::default().comment("sessions unavailable");
                    return Some((Ok(event), (state, id_hash, ticks, sent)));
                }
            };
            if html != sent {
                let event = Event::default().event("sessions").data(&html);
                return Some((Ok(event), (state, id_hash, ticks, html)));
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// Asks before terminating the selected sessions (`?session=<id>&…`).
pub async fn confirm(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    RawQuery(query): RawQuery,
) -> PanelResult<ConfirmPage> {
    let selection = Selection::parse(query.unwrap_or_default().as_bytes())?;
    let open = sessions::live_among(&state.pool, &selection.ids).await?;
    let filter = filter_of(&selection.product, &selection.customer)?;
    Ok(ConfirmPage {
        layout: Layout::new(&admin, "Terminate sessions", "/sessions"),
        gone: selection.ids.len() - open.len(),
        rows: open
            .into_iter()
            .map(|session| row(session, OffsetDateTime::now_utc()))
            .collect(),
        back: with_query("/sessions", &filter_query(&filter)),
        product: selection.product,
        customer: selection.customer,
    })
}

/// Terminates the selected sessions, each audited on its own; back to the
/// list (with its filter), which says how many ended.
pub async fn terminate(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    body: axum::body::Bytes,
) -> PanelResult<Response> {
    let selection = Selection::parse(&body)?;
    let filter = filter_of(&selection.product, &selection.customer)?;
    let (mut terminated, mut already_ended) = (0, 0);
    for id in &selection.ids {
        match sessions::terminate(&state.pool, &admin.ctx, *id).await {
            Ok(_) => terminated += 1,
            // Ended meanwhile (by its client, the reaper or another admin).
            Err(DomainError::Conflict { .. } | DomainError::NotFound(Entity::Session)) => {
                already_ended += 1;
            }
            Err(error) => return Err(error.into()),
        }
    }
    let mut query = form_urlencoded::Serializer::new(filter_query(&filter));
    query.append_pair("terminated", &terminated.to_string());
    if already_ended > 0 {
        query.append_pair("already_ended", &already_ended.to_string());
    }
    Ok(Redirect::to(&with_query("/sessions", &query.finish())).into_response())
}

/// The sessions a terminate form names, and the list's filter to go back to.
struct Selection {
    ids: Vec<Uuid>,
    product: String,
    customer: String,
}

impl Selection {
    /// From a query string or a form body; at least one session, at most
    /// [`SHOWN`] (what one list offers).
    fn parse(encoded: &[u8]) -> PanelResult<Self> {
        let mut selection = Self {
            ids: Vec::new(),
            product: String::new(),
            customer: String::new(),
        };
        for (key, value) in form_urlencoded::parse(encoded) {
            match key.as_ref() {
                SESSION_FIELD => selection.ids.push(value.parse().map_err(|_| {
                    PanelError::Invalid(format!("{SESSION_FIELD}: {value:?} is not a session id"))
                })?),
                "product" => selection.product = value.into_owned(),
                "customer" => selection.customer = value.into_owned(),
                _ => {}
            }
        }
        selection.ids.sort_unstable();
        selection.ids.dedup();
        if selection.ids.is_empty() {
            return Err(PanelError::Invalid(
                "select at least one session to terminate".into(),
            ));
        }
        if selection.ids.len() > SHOWN as usize {
            return Err(PanelError::Invalid(format!(
                "at most {SHOWN} sessions at a time"
            )));
        }
        Ok(selection)
    }
}

async fn live(state: &PanelState, filter: LiveFilter, is_admin: bool) -> DomainResult<Live> {
    let now = OffsetDateTime::now_utc();
    let page = sessions::live(&state.pool, filter, now, SHOWN).await?;
    Ok(Live {
        more: page.total - page.sessions.len() as i64,
        rows: page
            .sessions
            .into_iter()
            .map(|session| row(session, now))
            .collect(),
        total: page.total,
        overdue: page.overdue,
        is_admin,
        filtered: filter != LiveFilter::default(),
    })
}

fn row(session: OpenSession, now: OffsetDateTime) -> Row {
    let device = match (&session.device_name, session.device_id) {
        (Some(name), _) => name.clone(),
        (None, Some(id)) => format!("device {}", &id.simple().to_string()[..8]),
        (None, None) => "—".to_owned(),
    };
    Row {
        overdue: session.overdue_by(now).map(elapsed),
        device,
        session,
    }
}

fn render(live: Live) -> String {
    LiveFragment { live: &live }
        .render()
        .unwrap_or_else(|error| {
            tracing::error!(%error, "rendering live sessions failed");
            String::new()
        })
}

/// "42 s", "4 min 12 s", "3 h 5 min".
fn elapsed(late: time::Duration) -> String {
    let secs = late.whole_seconds();
    match secs {
        ..60 => format!("{secs} s"),
        60..3600 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

fn notice(query: &ListQuery) -> Option<String> {
    let terminated: u32 = query.terminated.parse().ok()?;
    let mut notice =
        format!("Terminated {terminated} session(s): every edge refuses their next heartbeat.");
    if let Ok(gone @ 1..) = query.already_ended.parse::<u32>() {
        notice.push_str(&format!(" {gone} had already ended."));
    }
    Some(notice)
}

fn filter_of(product: &str, customer: &str) -> PanelResult<LiveFilter> {
    Ok(LiveFilter {
        product_id: optional(product, "product")?,
        customer_id: optional(customer, "customer")?,
    })
}

fn optional<T: FromStr>(value: &str, field: &str) -> PanelResult<Option<T>> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    value
        .parse()
        .map(Some)
        .map_err(|_| PanelError::Invalid(format!("{field}: not one of the choices")))
}

/// The query string selecting `filter` (empty: no filter).
fn filter_query(filter: &LiveFilter) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if let Some(product) = filter.product_id {
        query.append_pair("product", &product.to_string());
    }
    if let Some(customer) = filter.customer_id {
        query.append_pair("customer", &customer.to_string());
    }
    query.finish()
}

fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

/// The open sessions the monitor shows as `sessions.csv` or `.json`, streamed (every matching
/// row, in constant memory).
pub async fn export(
    viewer: Viewer,
    State(state): State<PanelState>,
    Query(query): Query<ListQuery>,
    Query(download): Query<FormatQuery>,
) -> PanelResult<Response> {
    let filter = query.filter()?;
    let rows = sessions::stream_live(state.pool.clone(), filter);
    let total = sessions::live_count(&state.pool, filter).await?;
    exports::start(&viewer, &state, rows, download.format()?, total).await
}
