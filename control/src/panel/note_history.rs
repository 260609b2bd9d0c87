//! A note's history: every version with who wrote it and when, tombstones
//! marked, each against the one before as a word-level diff (`similar`),
//! or any two versions chosen against each other.

use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use similar::{ChangeTag, TextDiff};
use uuid::Uuid;

use super::error::PanelResult;
use super::lead::author;
use super::leads::names;
use super::pages::{Layout, when};
use super::products::{Refusal, refused};
use super::session::Viewer;
use crate::db::admins;
use crate::db::leads::{self, Institution, Note, NoteVersion};
use crate::error::{DomainError, Entity};
use crate::panel::PanelState;

/// A word diff gives up refining after this long and shows the rest as
/// replaced: two 20 000-character notes with nothing in common must not
/// hold a request.
const DIFF_TIMEOUT: Duration = Duration::from_millis(200);

/// A run of the diff: kept, inserted or deleted text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// `same`, `ins` or `del`.
    pub kind: &'static str,
    pub text: String,
}

/// `old` to `new` word by word, neighbouring words of one kind joined.
pub fn word_diff(old: &str, new: &str) -> Vec<Segment> {
    let diff = TextDiff::configure()
        .timeout(DIFF_TIMEOUT)
        .diff_words(old, new);
    let mut segments: Vec<Segment> = Vec::new();
    for change in diff.iter_all_changes() {
        let kind = match change.tag() {
            ChangeTag::Equal => "same",
            ChangeTag::Insert => "ins",
            ChangeTag::Delete => "del",
        };
        match segments.last_mut() {
            Some(last) if last.kind == kind => last.text.push_str(change.value()),
            _ => segments.push(Segment {
                kind,
                text: change.value().to_owned(),
            }),
        }
    }
    segments
}

#[derive(Debug)]
pub struct VersionView {
    pub version: NoteVersion,
    pub by: String,
    pub at: String,
    /// Against the version before; `None` for the first and a tombstone.
    pub diff: Option<Vec<Segment>>,
}

/// Two versions chosen against each other.
#[derive(Debug)]
pub struct Comparison {
    pub from: i32,
    pub to: i32,
    pub diff: Vec<Segment>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct CompareQuery {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "lead_note_history.html")]
pub struct HistoryPage {
    layout: Layout,
    note: Note,
    institution: Institution,
    /// A contact's name, if the note is about one that is not deleted.
    contact: Option<String>,
    versions: Vec<VersionView>,
    query: CompareQuery,
    comparison: Option<Comparison>,
    refusal: Refusal,
}

impl HistoryPage {
    /// The version a chooser starts at: the query's, else `default`.
    fn chosen(&self, field: &str, default: i32) -> i32 {
        let text = if field == "from" {
            &self.query.from
        } else {
            &self.query.to
        };
        text.parse().unwrap_or(default)
    }

    fn newest(&self) -> i32 {
        self.versions.last().map_or(1, |v| v.version.version)
    }
}

pub async fn show(
    viewer: Viewer,
    State(state): State<PanelState>,
    Path(id): Path<Uuid>,
    Query(query): Query<CompareQuery>,
) -> PanelResult<Response> {
    let note = leads::get_note(&state.pool, id).await?;
    let institution_id = note
        .institution_id
        .ok_or(DomainError::NotFound(Entity::LeadNote))?;
    let institution = leads::get_institution(&state.pool, institution_id).await?;
    let contact = match note.contact_id {
        Some(contact_id) => match leads::get_contact(&state.pool, contact_id).await {
            Ok(contact) => Some(contact.contact.full_name),
            Err(DomainError::NotFound(_)) => None,
            Err(error) => return Err(error.into()),
        },
        None => None,
    };
    let history = leads::note_history(&state.pool, id).await?;
    let names = names(&admins::list(&state.pool).await?);
    let versions = history
        .iter()
        .enumerate()
        .map(|(i, version)| VersionView {
            by: author(&names, version.edited_by),
            at: when(&version.edited_at),
            diff: match i.checked_sub(1).map(|p| &history[p]) {
                Some(before) if !version.deleted => Some(word_diff(&before.body, &version.body)),
                _ => None,
            },
            version: version.clone(),
        })
        .collect();
    let compared = compare(&history, &query);
    let mut page = HistoryPage {
        layout: Layout::new(&viewer, "Note history", "/leads"),
        note,
        institution,
        contact,
        versions,
        query,
        comparison: None,
        refusal: Refusal::default(),
    };
    match compared {
        Ok(comparison) => {
            page.comparison = comparison;
            Ok(page.into_response())
        }
        Err(error) => {
            page.refusal = Refusal::of(&error);
            Ok(refused(&error, page))
        }
    }
}

/// The two versions the query chose (a missing end: the one before `to`,
/// or the newest), or `None` when it chose none.
fn compare(
    history: &[NoteVersion],
    query: &CompareQuery,
) -> Result<Option<Comparison>, DomainError> {
    let (from, to) = (query.from.trim(), query.to.trim());
    if from.is_empty() && to.is_empty() {
        return Ok(None);
    }
    let newest = history.last().map_or(1, |v| v.version);
    let pick = |field: &str, text: &str| {
        text.parse::<i32>()
            .ok()
            .and_then(|n| history.iter().find(|v| v.version == n))
            .ok_or_else(|| {
                DomainError::invalid(field, format!("must be a version from 1 to {newest}"))
            })
    };
    let to = match to {
        "" => pick("to", &newest.to_string())?,
        text => pick("to", text)?,
    };
    let from = match from {
        "" => pick("from", &(to.version - 1).max(1).to_string())?,
        text => pick("from", text)?,
    };
    Ok(Some(Comparison {
        from: from.version,
        to: to.version,
        diff: word_diff(&from.body, &to.body),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(segments: &[Segment]) -> String {
        segments
            .iter()
            .map(|s| match s.kind {
                "ins" => format!("[+{}]", s.text),
                "del" => format!("[-{}]", s.text),
                _ => s.text.clone(),
            })
            .collect()
    }

    #[test]
    fn words_are_diffed_and_runs_joined() {
        let diff = word_diff(
            "Call Anna about the tender in May",
            "Call Anna Berg about the tender in June",
        );
        assert_eq!(
            render(&diff),
            "Call Anna [+Berg ]about the tender in [-May][+June]"
        );
        assert_eq!(render(&word_diff("same", "same")), "same");
        assert_eq!(render(&word_diff("", "new text")), "[+new text]");
    }
}
