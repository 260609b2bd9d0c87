//! The lead CRM (`leads:read|write`) under `/leads`: institutions and their
//! filtered list, exported as CSV or JSON; contacts with their phones and
//! e-mail addresses; notes with their versions (an edit names the version it
//! was based on: a stale one is a 409); search across all of them;
//! conversion of an institution to a customer; and the CSV import, checked
//! by a dry run and applied all or nothing. The rules are `db::leads`'.

pub mod contacts;
pub mod import;
pub mod institutions;
pub mod notes;

use utoipa_axum::router::OpenApiRouter;

use crate::http::ApiState;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .merge(institutions::router())
        .merge(contacts::router())
        .merge(notes::router())
        .merge(import::router())
}
