//! Form bodies with our refusal: a malformed panel form gets the panel's
//! 400 page with its code, not axum's plain-text 422.

use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::error::PanelError;

#[derive(Debug, Clone)]
pub struct Form<T>(pub T);

impl<T, S> FromRequest<S> for Form<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = PanelError;

    async fn from_request(request: Request, state: &S) -> Result<Self, PanelError> {
        axum::Form::<T>::from_request(request, state)
            .await
            .map(|axum::Form(value)| Self(value))
            .map_err(|rejection| PanelError::Invalid(rejection.body_text()))
    }
}
