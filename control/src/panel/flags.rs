//! Feature flags, global and per product: how many active licenses each
//! decides for and is on for (the edges' rule, `flags_on`), create / toggle
//! / edit / delete through `db::flags`, and the delivery of the latest flag
//! change: the snapshot sequence that carried it and the one each edge
//! applied.

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::error::{PanelError, PanelResult};
use super::form::Form;
use super::pages::Layout;
use super::products::{Refusal, answerable, optional, refused};
use super::session::{AdminUser, Viewer};
use crate::db::edges::{self, Edge};
use crate::db::flags::{self, Delivery, FeatureFlag, FlagUpdate, NewFlag, Reach};
use crate::db::products::{self, Product};
use crate::error::DomainError;
use crate::panel::PanelState;

/// Flag changes listed under "delivery".
const DELIVERIES_SHOWN: i64 = 5;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    /// A product id: only its flags and the global ones.
    pub product: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct FlagForm {
    pub key: String,
    /// Empty: global.
    pub product_id: String,
    /// `on` when ticked.
    pub enabled: String,
    pub rollout_percent: String,
    pub description: String,
}

impl FlagForm {
    fn of(flag: &FeatureFlag) -> Self {
        Self {
            key: flag.key.clone(),
            product_id: flag.product_id.map(|id| id.to_string()).unwrap_or_default(),
            enabled: if flag.enabled {
                "on".into()
            } else {
                String::new()
            },
            rollout_percent: flag.rollout_percent.to_string(),
            description: flag.description.clone().unwrap_or_default(),
        }
    }

    fn enabled(&self) -> bool {
        !self.enabled.is_empty()
    }

    fn rollout(&self) -> Result<i16, DomainError> {
        match self.rollout_percent.trim() {
            "" => Ok(100),
            text => text.parse().map_err(|_| {
                DomainError::invalid("rollout_percent", "a whole number from 0 to 100")
            }),
        }
    }

    fn product_id(&self) -> Result<Option<i32>, DomainError> {
        match self.product_id.trim() {
            "" => Ok(None),
            text => text
                .parse()
                .map(Some)
                .map_err(|_| DomainError::invalid("product_id", "choose a product, or global")),
        }
    }
}

#[derive(Debug)]
pub struct FlagRow {
    pub flag: FeatureFlag,
    pub scope: String,
    pub reach: Reach,
}

#[derive(Debug)]
pub struct EdgeRow {
    pub edge: Edge,
    /// Applied the snapshot that carried the latest flag change.
    pub has_latest: bool,
}

#[derive(Debug)]
pub struct DeliveryRow {
    pub delivery: Delivery,
    /// The flag's key, or that it was deleted.
    pub flag: String,
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "flags.html")]
pub struct FlagsPage {
    layout: Layout,
    rows: Vec<FlagRow>,
    products: Vec<Product>,
    /// The product the list is narrowed to.
    filter: Option<Product>,
    form: FlagForm,
    error: Refusal,
    deliveries: Vec<DeliveryRow>,
    edges: Vec<EdgeRow>,
    /// The sequence that carried the latest flag change, if published.
    latest_sequence: Option<i64>,
}

pub async fn list(
    viewer: Viewer,
    State(state): State<PanelState>,
    Query(query): Query<ListQuery>,
) -> PanelResult<FlagsPage> {
    let filter = match query.product.trim() {
        "" => None,
        text => Some(
            text.parse::<i32>()
                .map_err(|_| PanelError::Invalid("product: not a product id".into()))?,
        ),
    };
    let form = FlagForm {
        product_id: filter.map(|id| id.to_string()).unwrap_or_default(),
        rollout_percent: "100".into(),
        ..FlagForm::default()
    };
    flags_page(&viewer, &state, filter, form, Refusal::default()).await
}

async fn flags_page(
    viewer: &Viewer,
    state: &PanelState,
    filter: Option<i32>,
    form: FlagForm,
    error: Refusal,
) -> PanelResult<FlagsPage> {
    let products = products::list(&state.pool).await?;
    let names: HashMap<i32, &str> = products.iter().map(|p| (p.id, p.name.as_str())).collect();
    let all = flags::list(&state.pool).await?;
    let reach = flags::reach(&state.pool).await?;
    let keys: HashMap<String, &str> = all
        .iter()
        .map(|f| (f.id.to_string(), f.key.as_str()))
        .collect();
    let deliveries: Vec<DeliveryRow> = flags::deliveries(&state.pool, DELIVERIES_SHOWN)
        .await?
        .into_iter()
        .map(|delivery| DeliveryRow {
            flag: keys
                .get(&delivery.flag_id)
                .map_or_else(|| "a deleted flag".to_owned(), |key| (*key).to_owned()),
            delivery,
        })
        .collect();
    let latest_sequence = deliveries.first().and_then(|d| d.delivery.sequence);
    let edges = edges::list(&state.pool)
        .await?
        .into_iter()
        .filter(|edge| edge.revoked_at.is_none() && edge.enrolled_at.is_some())
        .map(|edge| EdgeRow {
            has_latest: latest_sequence
                .is_some_and(|carried| edge.snapshot_sequence.is_some_and(|held| held >= carried)),
            edge,
        })
        .collect();
    let rows = all
        .iter()
        .filter(|flag| filter.is_none() || flag.product_id.is_none() || flag.product_id == filter)
        .map(|flag| FlagRow {
            scope: flag.product_id.map_or_else(
                || "global".to_owned(),
                |id| {
                    names
                        .get(&id)
                        .map_or_else(|| id.to_string(), |n| (*n).to_owned())
                },
            ),
            reach: reach.get(&flag.id).copied().unwrap_or_default(),
            flag: flag.clone(),
        })
        .collect();
    let filter = filter.and_then(|id| products.iter().find(|p| p.id == id).cloned());
    Ok(FlagsPage {
        layout: Layout::new(viewer, "Feature flags", "/products"),
        rows,
        products,
        filter,
        form,
        error,
        deliveries,
        edges,
        latest_sequence,
    })
}

pub async fn create(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Form(form): Form<FlagForm>,
) -> PanelResult<Response> {
    let new = form.rollout().and_then(|rollout_percent| {
        Ok(NewFlag {
            key: form.key.trim().to_owned(),
            product_id: form.product_id()?,
            enabled: form.enabled(),
            rollout_percent,
            description: optional(&form.description),
        })
    });
    let created = match new {
        Ok(new) => flags::create(&state.pool, &admin.ctx, &new).await,
        Err(error) => Err(error),
    };
    match created {
        Ok(flag) => Ok(Redirect::to(&back_to(flag.product_id)).into_response()),
        Err(error) if answerable(&error) => {
            let filter = form.product_id().ok().flatten();
            let refusal = Refusal::of(&error);
            let page = flags_page(&admin, &state, filter, form, refusal).await?;
            Ok(refused(&error, page))
        }
        Err(error) => Err(error.into()),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ToggleForm {
    /// The state asked for (`true` / `false`), so a repeated click is
    /// harmless.
    pub enabled: String,
}

pub async fn toggle(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
    Form(form): Form<ToggleForm>,
) -> PanelResult<Response> {
    let enabled = match form.enabled.as_str() {
        "true" => true,
        "false" => false,
        _ => return Err(PanelError::Invalid("enabled: true or false".into())),
    };
    let changes = FlagUpdate {
        enabled: Some(enabled),
        ..FlagUpdate::default()
    };
    let flag = flags::update(&state.pool, &admin.ctx, id, &changes).await?;
    Ok(Redirect::to(&back_to(flag.product_id)).into_response())
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "flag_form.html")]
pub struct EditPage {
    layout: Layout,
    flag: FeatureFlag,
    scope: String,
    form: FlagForm,
    error: Refusal,
}

async fn edit_page(
    admin: &Viewer,
    state: &PanelState,
    flag: FeatureFlag,
    form: FlagForm,
    error: Refusal,
) -> PanelResult<EditPage> {
    let scope = match flag.product_id {
        None => "every product (global)".to_owned(),
        Some(id) => products::get(&state.pool, id).await?.name,
    };
    Ok(EditPage {
        layout: Layout::new(admin, "Edit feature flag", "/products"),
        flag,
        scope,
        form,
        error,
    })
}

pub async fn edit_form(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
) -> PanelResult<EditPage> {
    let flag = flags::get(&state.pool, id).await?;
    let form = FlagForm::of(&flag);
    edit_page(&admin, &state, flag, form, Refusal::default()).await
}

pub async fn update(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
    Form(form): Form<FlagForm>,
) -> PanelResult<Response> {
    let changes = form.rollout().map(|rollout_percent| FlagUpdate {
        enabled: Some(form.enabled()),
        rollout_percent: Some(rollout_percent),
        description: Some(optional(&form.description)),
    });
    let updated = match changes {
        Ok(changes) => flags::update(&state.pool, &admin.ctx, id, &changes).await,
        Err(error) => Err(error),
    };
    match updated {
        Ok(flag) => Ok(Redirect::to(&back_to(flag.product_id)).into_response()),
        Err(error) if answerable(&error) => {
            let flag = flags::get(&state.pool, id).await?;
            let refusal = Refusal::of(&error);
            let page = edit_page(&admin, &state, flag, form, refusal).await?;
            Ok(refused(&error, page))
        }
        Err(error) => Err(error.into()),
    }
}

pub async fn delete(
    AdminUser(admin): AdminUser,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
) -> PanelResult<Response> {
    let flag = flags::delete(&state.pool, &admin.ctx, id).await?;
    Ok(Redirect::to(&back_to(flag.product_id)).into_response())
}

/// The list the flag is shown in.
fn back_to(product_id: Option<i32>) -> String {
    match product_id {
        Some(id) => format!("/flags?product={id}"),
        None => "/flags".to_owned(),
    }
}
