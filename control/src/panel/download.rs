//! The `format` of a list's export link: every list page offers its
//! filtered rows as CSV or JSON, written by [`crate::export`] like the API's.

use serde::Deserialize;

use super::error::{PanelError, PanelResult};
use crate::export::Format;

/// `?format=csv|json`, beside the list's own filters.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FormatQuery {
    pub format: String,
}

impl FormatQuery {
    pub fn format(&self) -> PanelResult<Format> {
        match self.format.as_str() {
            "" | "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            _ => Err(PanelError::Invalid("format: csv or json".into())),
        }
    }
}
