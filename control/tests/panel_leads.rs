//! The panel's lead CRM over HTTP: the list's empty state, filters and
//! search (by a word only an old version of a note had), the create form's
//! refusals each at its field, the board and its moves (htmx and plain),
//! contacts and their phones and e-mail addresses, notes with a stale edit
//! answered by a conflict that shows the current text, tombstones, a
//! note's history with word diffs, the conversion to a customer, every
//! change audited, and a viewer refused every change.

#[allow(dead_code)]
mod support;

use axum::http::{Method, StatusCode};
use latchkey_control::app::{self, AppState};
use latchkey_control::db::MIGRATOR;
use latchkey_control::db::admins::Role;
use latchkey_control::panel;
use sqlx::PgPool;
use support::config;
use support::panel::{Client, Reply, admin};
use uuid::Uuid;

fn app(pool: &PgPool) -> axum::Router {
    app::router(AppState::new(pool.clone(), &config(&[])).unwrap())
}

async fn admin_client(pool: &PgPool) -> (Client, String) {
    admin(pool, "alice", Role::Admin).await;
    let mut client = Client::new(app(pool), "192.0.2.140");
    let csrf = client.logged_in("alice").await;
    (client, csrf)
}

/// Creates an institution through the form; answers its id.
async fn institution(client: &mut Client, csrf: &str, fields: &[(&str, &str)]) -> String {
    let mut form = vec![("_csrf", csrf)];
    form.extend_from_slice(fields);
    let created = client.post("/leads", &form).await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    created.location().trim_start_matches("/leads/").to_owned()
}

async fn contact(client: &mut Client, csrf: &str, lead: &str, name: &str) -> String {
    let added = client
        .post(
            &format!("/leads/{lead}/contacts"),
            &[("_csrf", csrf), ("full_name", name), ("title", "")],
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    added
        .location()
        .rsplit("#contact-")
        .next()
        .unwrap()
        .to_owned()
}

async fn detail(
    client: &mut Client,
    csrf: &str,
    contact: &str,
    kind: &str,
    value: &str,
    primary: bool,
) -> Reply {
    let mut form = vec![
        ("_csrf", csrf),
        ("kind", kind),
        ("value", value),
        ("label", "office"),
    ];
    if primary {
        form.push(("primary", "yes"));
    }
    client
        .post(&format!("/leads/contacts/{contact}/details"), &form)
        .await
}

async fn note(client: &mut Client, csrf: &str, lead: &str, about: &str, body: &str) -> String {
    let added = client
        .post(
            &format!("/leads/{lead}/notes"),
            &[("_csrf", csrf), ("about", about), ("body", body)],
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    added.location().rsplit("#note-").next().unwrap().to_owned()
}

async fn edit(client: &mut Client, csrf: &str, note: &str, base: &str, body: &str) -> Reply {
    client
        .post(
            &format!("/leads/notes/{note}"),
            &[("_csrf", csrf), ("base", base), ("body", body)],
        )
        .await
}

async fn actions(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT action FROM audit_log WHERE action LIKE 'lead.%' ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// The HTML of the element whose opening tag holds `marker`, up to `end`.
fn part<'a>(body: &'a str, marker: &str, end: &str) -> &'a str {
    let start = body
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {body}"));
    let stop = body[start..].find(end).map_or(body.len(), |e| start + e);
    &body[start..stop]
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_list_filters_and_the_create_form_refuses_at_each_field(pool: PgPool) {
    let (mut client, csrf) = admin_client(&pool).await;
    let empty = client.get("/leads").await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.body);
    assert!(empty.body.contains("No leads yet."), "{}", empty.body);
    assert!(
        !empty.body.contains("is not yet in the panel"),
        "the placeholder is gone"
    );
    assert!(empty.body.contains("id=\"new-institution\""));
    let form = client.get("/leads/new").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("id=\"institution-form\""));

    for (field, value, shown) in [
        (
            "name",
            " ",
            "id=\"name-error\">Name must be 1 to 256 characters",
        ),
        (
            "website",
            "uni-bonn.de",
            "id=\"website-error\">Website must be an address like https://example.org",
        ),
        (
            "extra",
            "{beds: 3}",
            "id=\"extra-error\">More fields must be a JSON object like {&#34;beds&#34;: 120}",
        ),
        (
            "extra",
            "[1, 2]",
            "id=\"extra-error\">More fields must be a JSON object",
        ),
        (
            "stage",
            "sold",
            "id=\"stage-error\">Stage must be one of new",
        ),
        (
            "owner_id",
            "alice",
            "id=\"owner_id-error\">Owner is not an admin",
        ),
        (
            "owner_id",
            "00000000-0000-0000-0000-000000000001",
            "id=\"owner_id-error\">Owner is not an admin",
        ),
        (
            "tags",
            &"x".repeat(65),
            "id=\"tags-error\">Tags must be 1 to 64 characters",
        ),
    ] {
        let mut form = vec![
            ("_csrf", csrf.as_str()),
            ("name", "Uniklinik Bonn"),
            ("city", "Bonn"),
        ];
        form.retain(|(name, _)| *name != field);
        form.push((field, value));
        let refused = client.post("/leads", &form).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{field}");
        assert_eq!(refused.error_code(), "INVALID_REQUEST");
        assert!(refused.body.contains(shown), "{field}: {}", refused.body);
        assert_eq!(
            refused.body.matches("class=\"error field-error\"").count(),
            1,
            "only {field} is at fault"
        );
        assert!(
            refused.body.contains("value=\"Bonn\""),
            "what was entered is kept"
        );
    }
    assert_eq!(actions(&pool).await, Vec::<String>::new());

    let alice: Uuid = sqlx::query_scalar("SELECT id FROM admin_users WHERE username = 'alice'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let bonn = institution(
        &mut client,
        &csrf,
        &[
            ("name", "Uniklinik Bonn"),
            ("kind", "hospital"),
            ("website", "https://ukbonn.de"),
            ("city", "Bonn"),
            ("country", "DE"),
            ("stage", "qualified"),
            ("owner_id", &alice.to_string()),
            ("tags", "Hospital, NRW"),
            ("extra", "{\"beds\": 1300}"),
        ],
    )
    .await;
    institution(&mut client, &csrf, &[("name", "Gymnasium Nord")]).await;
    let page = client.get(&format!("/leads/{bonn}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for shown in [
        "id=\"institution-name\">Uniklinik Bonn",
        "id=\"institution-stage\" class=\"stage stage-qualified\">Qualified",
        "id=\"institution-owner\">alice",
        "<dt>beds</dt><dd class=\"extra\">1300</dd>",
        "href=\"/leads?tag=hospital\"",
        "id=\"no-contacts\"",
        "id=\"no-notes\"",
        "id=\"convert\"",
    ] {
        assert!(page.body.contains(shown), "{shown}: {}", page.body);
    }

    let list = client.get("/leads").await;
    assert_eq!(list.body.matches("class=\"lead-row\"").count(), 2);
    for (query, expected) in [
        ("stage=qualified", 1),
        ("stage=new", 1),
        ("stage=lost", 0),
        ("tag=nrw", 1),
        ("tag=school", 0),
        (&format!("owner={alice}") as &str, 1),
    ] {
        let filtered = client.get(&format!("/leads?{query}")).await;
        assert_eq!(filtered.status, StatusCode::OK, "{query}");
        assert_eq!(
            filtered.body.matches("class=\"lead-row\"").count(),
            expected,
            "{query}"
        );
        if expected == 0 {
            assert!(
                filtered
                    .body
                    .contains("No institution matches these filters.")
            );
        }
    }
    let bad = client.get("/leads?stage=sold").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("id=\"stage-error\">Stage must be one of"));
    let bad = client.get("/leads?owner=bob").await;
    assert!(
        bad.body
            .contains("id=\"owner-error\">Owner is not an admin")
    );

    // The edit form refuses at its field too, and saves.
    let refused = client
        .post(
            &format!("/leads/{bonn}"),
            &[
                ("_csrf", &csrf),
                ("name", "Uniklinik Bonn"),
                ("website", "ftp://x.de"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("id=\"website-error\""));
    assert!(
        refused
            .body
            .contains("<details id=\"edit-institution\" open>")
    );
    let saved = client
        .post(
            &format!("/leads/{bonn}"),
            &[
                ("_csrf", &csrf),
                ("name", "Universitätsklinikum Bonn"),
                ("stage", "proposal"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let page = client.get(&format!("/leads/{bonn}")).await;
    assert!(page.body.contains("Universitätsklinikum Bonn"));
    assert!(
        page.body
            .contains("id=\"institution-owner\"><span class=\"muted\">no one")
    );
    assert_eq!(
        actions(&pool).await,
        [
            "lead.institution.create",
            "lead.institution.create",
            "lead.institution.update"
        ]
    );
    let missing = client
        .get("/leads/00000000-0000-0000-0000-000000000000")
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn contacts_and_their_details_with_refusals_at_the_field(pool: PgPool) {
    let (mut client, csrf) = admin_client(&pool).await;
    let lead = institution(&mut client, &csrf, &[("name", "Stadtbibliothek Köln")]).await;
    let page = format!("/leads/{lead}");

    let blank = client
        .post(
            &format!("{page}/contacts"),
            &[("_csrf", &csrf), ("full_name", ""), ("title", "Leitung")],
        )
        .await;
    assert_eq!(blank.status, StatusCode::BAD_REQUEST);
    assert!(
        blank
            .body
            .contains("id=\"contact-name-error\">Name must be 1 to 256 characters")
    );
    assert!(blank.body.contains("value=\"Leitung\""), "the role is kept");
    let anna = contact(&mut client, &csrf, &lead, "Anna Berg").await;
    let ben = contact(&mut client, &csrf, &lead, "Ben Kurz").await;

    let bad = detail(&mut client, &csrf, &anna, "phone", "0221 123456", false).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    let error = format!(
        "id=\"detail-new-{anna}-value-error\">Phone: must be an international number like +49 30 1234567"
    );
    assert!(bad.body.contains(&error), "{}", bad.body);
    assert!(
        bad.body.contains("value=\"0221 123456\""),
        "the number is kept"
    );
    let bad = detail(&mut client, &csrf, &ben, "email", "ben-at-koeln", false).await;
    assert!(bad.body.contains(&format!(
        "id=\"detail-new-{ben}-value-error\">E-mail: must be an e-mail address"
    )));

    for (value, primary) in [("+49 221 123-456", true), ("+49 170 5550101", false)] {
        let added = detail(&mut client, &csrf, &anna, "phone", value, primary).await;
        assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    }
    let again = detail(&mut client, &csrf, &anna, "phone", "+49221123456", false).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(
        again
            .body
            .contains("Phone: the contact has this one already")
    );
    detail(&mut client, &csrf, &ben, "phone", "+49 221 999 000", true).await;
    detail(&mut client, &csrf, &ben, "email", "Ben.Kurz@Koeln.DE", true).await;

    let shown = client.get(&page).await;
    assert!(shown.body.contains("href=\"tel:+49221123456\""));
    assert!(shown.body.contains("href=\"mailto:Ben.Kurz@koeln.de\""));
    assert_eq!(
        shown.body.matches("class=\"detail detail-phone\"").count(),
        3
    );
    assert_eq!(shown.body.matches("★ primary").count(), 3);

    // The mobile becomes the primary: the mark moves.
    let mobile: i64 = sqlx::query_scalar("SELECT id FROM lead_contact_details WHERE value = $1")
        .bind("+491705550101")
        .fetch_one(&pool)
        .await
        .unwrap();
    let refused = client
        .post(
            &format!("/leads/details/{mobile}"),
            &[
                ("_csrf", &csrf),
                ("kind", "phone"),
                ("value", "+49 170"),
                ("label", "mobile"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains(&format!(
        "id=\"detail-{mobile}-value-error\">Phone: must be"
    )));
    assert!(
        refused
            .body
            .contains("<details class=\"inline-edit\" open>")
    );
    let saved = client
        .post(
            &format!("/leads/details/{mobile}"),
            &[
                ("_csrf", &csrf),
                ("kind", "phone"),
                ("value", "+49 170 5550101"),
                ("label", "mobile"),
                ("primary", "yes"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let primaries: Vec<String> = sqlx::query_scalar(
        "SELECT value FROM lead_contact_details WHERE contact_id = $1::uuid AND is_primary",
    )
    .bind(&anna)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(primaries, ["+491705550101"]);
    let deleted = client
        .post(
            &format!("/leads/details/{mobile}/delete"),
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert_eq!(
        client
            .post("/leads/details/x/delete", &[("_csrf", &csrf)])
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // A note about Ben stays on the timeline once he is deleted.
    note(
        &mut client,
        &csrf,
        &lead,
        &ben,
        "Ben prefers calls after 3pm",
    )
    .await;
    let renamed = client
        .post(
            &format!("/leads/contacts/{ben}"),
            &[
                ("_csrf", &csrf),
                ("full_name", "Benedikt Kurz"),
                ("title", "IT"),
            ],
        )
        .await;
    assert_eq!(renamed.status, StatusCode::SEE_OTHER);
    let gone = client
        .post(
            &format!("/leads/contacts/{ben}/delete"),
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(gone.status, StatusCode::SEE_OTHER);
    let shown = client.get(&page).await;
    assert!(!shown.body.contains("Benedikt Kurz"));
    assert!(
        shown
            .body
            .contains("About <strong>a former contact</strong>")
    );
    assert!(shown.body.contains("Ben prefers calls after 3pm"));
    let foreign = client
        .post(
            &format!("{page}/notes"),
            &[("_csrf", &csrf), ("about", &ben), ("body", "x")],
        )
        .await;
    assert_eq!(foreign.status, StatusCode::BAD_REQUEST);
    assert!(foreign.body.contains("id=\"note-about-error\""));

    assert_eq!(
        actions(&pool).await,
        [
            "lead.institution.create",
            "lead.contact.create",
            "lead.contact.create",
            "lead.detail.create",
            "lead.detail.create",
            "lead.detail.create",
            "lead.detail.create",
            "lead.detail.update",
            "lead.detail.delete",
            "lead.note.create",
            "lead.contact.update",
            "lead.contact.delete",
        ]
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_stale_note_edit_is_a_conflict_that_shows_the_current_text(pool: PgPool) {
    let (mut client, csrf) = admin_client(&pool).await;
    let lead = institution(&mut client, &csrf, &[("name", "Gesamtschule Ost")]).await;
    let id = note(&mut client, &csrf, &lead, "", "Ausschreibung im Mai").await;
    let page = client.get(&format!("/leads/{lead}")).await;
    assert!(page.body.contains("name=\"base\" value=\"1\""));

    // Two people opened version 1; the first edit wins.
    let first = edit(&mut client, &csrf, &id, "1", "Ausschreibung im Juni").await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
    let stale = edit(
        &mut client,
        &csrf,
        &id,
        "1",
        "Ausschreibung im Juli, mit Budget",
    )
    .await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.body);
    assert_eq!(stale.error_code(), "CONFLICT");
    let conflict = part(&stale.body, "id=\"note-conflict\"", "</form>");
    for shown in [
        "Not saved: someone changed the note first.",
        "You started from version 1; it is at version 2 now.",
        "id=\"conflict-current\">Ausschreibung im Juni</blockquote>",
        "name=\"base\" value=\"2\"",
        "Ausschreibung im Juli, mit Budget</textarea>",
        "Save over version 2",
    ] {
        assert!(conflict.contains(shown), "{shown}: {conflict}");
    }
    let versions: i64 = sqlx::query_scalar("SELECT count(*) FROM lead_note_versions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(versions, 2, "the stale edit wrote nothing");

    // An empty text is refused at the note's own form.
    let empty = edit(&mut client, &csrf, &id, "2", " ").await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    assert!(
        empty
            .body
            .contains("The note must be 1 to 20000 characters")
    );
    assert!(
        empty
            .body
            .contains("<details class=\"inline-edit note-edit\" open>")
    );

    // A stale delete is refused too; the right base makes a tombstone.
    let delete = format!("/leads/notes/{id}/delete");
    let refused = client
        .post(&delete, &[("_csrf", &csrf), ("base", "1")])
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(
        refused
            .body
            .contains("Not deleted: someone changed the note first.")
    );
    let deleted = client
        .post(&delete, &[("_csrf", &csrf), ("base", "2")])
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    let page = client.get(&format!("/leads/{lead}")).await;
    assert!(page.body.contains("id=\"no-notes\""));
    assert!(page.body.contains("1 deleted note(s)"));
    let late = edit(&mut client, &csrf, &id, "2", "too late").await;
    assert_eq!(late.status, StatusCode::CONFLICT);
    assert!(
        late.body
            .contains("Not saved: the note was deleted meanwhile.")
    );
    assert!(
        late.body
            .contains("id=\"conflict-entered\">too late</blockquote>")
    );
    assert_eq!(
        actions(&pool).await,
        [
            "lead.institution.create",
            "lead.note.create",
            "lead.note.update",
            "lead.note.delete"
        ]
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_notes_history_diffs_each_version_and_two_chosen_ones(pool: PgPool) {
    let (mut client, csrf) = admin_client(&pool).await;
    let lead = institution(&mut client, &csrf, &[("name", "Klinikum Mitte")]).await;
    let id = note(
        &mut client,
        &csrf,
        &lead,
        "",
        "Call Anna about the tender in May",
    )
    .await;
    edit(
        &mut client,
        &csrf,
        &id,
        "1",
        "Call Anna Berg about the tender in June",
    )
    .await;
    edit(&mut client, &csrf, &id, "2", "Anna Berg signed in June").await;
    client
        .post(
            &format!("/leads/notes/{id}/delete"),
            &[("_csrf", &csrf), ("base", "3")],
        )
        .await;

    let history = client.get(&format!("/leads/notes/{id}")).await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.body);
    let body = &history.body;
    assert!(body.contains("4 version(s)"), "{body}");
    let v2 = part(body, "id=\"version-2\"", "</li>");
    assert!(v2.contains("alice"), "{v2}");
    assert!(
        v2.contains("<ins>Berg </ins>") || v2.contains("<ins> Berg</ins>"),
        "{v2}"
    );
    assert!(v2.contains("<del>May</del><ins>June</ins>"), "{v2}");
    let v1 = part(body, "id=\"version-1\"", "</li>");
    assert!(v1.contains("The first version"), "{v1}");
    let v4 = part(body, "id=\"version-4\"", "</li>");
    assert!(body.contains("class=\"card version tombstone\" id=\"version-4\""));
    assert!(v4.contains("deleted the note"), "{v4}");
    assert!(!body.contains("id=\"comparison\""), "no pair chosen");

    let chosen = client.get(&format!("/leads/notes/{id}?from=1&to=3")).await;
    assert_eq!(chosen.status, StatusCode::OK);
    let comparison = part(&chosen.body, "id=\"comparison\"", "</div>");
    assert!(comparison.contains("Version 1 → version 3"), "{comparison}");
    assert!(comparison.contains("<del>Call </del>"), "{comparison}");
    assert!(comparison.contains("<ins>signed</ins>"), "{comparison}");
    assert!(chosen.body.contains("<option value=\"1\" selected>"));
    let only_to = client.get(&format!("/leads/notes/{id}?to=2")).await;
    assert!(only_to.body.contains("Version 1 → version 2"));
    let bad = client.get(&format!("/leads/notes/{id}?from=9&to=2")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body
            .contains("id=\"from-error\">From: must be a version from 1 to 4")
    );
    let missing = client
        .get("/leads/notes/00000000-0000-0000-0000-000000000000")
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn search_finds_an_old_version_of_a_note_and_says_where(pool: PgPool) {
    let (mut client, csrf) = admin_client(&pool).await;
    let lead = institution(
        &mut client,
        &csrf,
        &[("name", "Berufsschule West"), ("city", "Dortmund")],
    )
    .await;
    let anna = contact(&mut client, &csrf, &lead, "Anna Schmidt").await;
    let id = note(
        &mut client,
        &csrf,
        &lead,
        &anna,
        "Sie fragt nach Mengenrabatten",
    )
    .await;
    edit(&mut client, &csrf, &id, "1", "Angebot verschickt").await;

    // German stemming: "Mengenrabatt" finds "Mengenrabatten", in version 1 only.
    let hits = client.get("/leads/search?q=Mengenrabatt").await;
    assert_eq!(hits.status, StatusCode::OK, "{}", hits.body);
    let hit = part(&hits.body, "class=\"hit hit-note\"", "</li>");
    for shown in [
        "Berufsschule West",
        "a note about Anna Schmidt, version 1 of 2 (an older text",
        "“Sie fragt nach Mengenrabatten”",
        &format!("href=\"/leads/notes/{id}\""),
    ] {
        assert!(hit.contains(shown), "{shown}: {hit}");
    }
    let by_contact = client.get("/leads/search?q=schmidt").await;
    assert!(by_contact.body.contains("matched in contact Anna Schmidt"));
    let by_name = client.get("/leads/search?q=dortmund").await;
    assert!(by_name.body.contains("class=\"hit hit-institution\""));
    let none = client.get("/leads/search?q=zebra").await;
    assert!(none.body.contains("id=\"no-hit\">Nothing matches “zebra”"));
    let blank = client.get("/leads/search?q=").await;
    assert_eq!(blank.body.trim(), "");

    // Without JavaScript the form's GET shows the same hits on the page.
    let page = client.get("/leads?q=Mengenrabatt").await;
    assert!(page.body.contains("value=\"Mengenrabatt\""));
    assert!(
        page.body
            .contains("a note about Anna Schmidt, version 1 of 2")
    );
    let long = client.get(&format!("/leads?q={}", "a".repeat(300))).await;
    assert_eq!(long.status, StatusCode::BAD_REQUEST);
    assert!(
        long.body
            .contains("id=\"q-error\">Search must be 1 to 256 characters")
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_board_moves_a_card_by_htmx_and_by_a_plain_form(pool: PgPool) {
    let (mut client, csrf) = admin_client(&pool).await;
    let empty = client.get("/leads/board").await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.body);
    assert_eq!(empty.body.matches("class=\"column\"").count(), 6);
    assert_eq!(empty.body.matches("None.").count(), 6);
    let lead = institution(
        &mut client,
        &csrf,
        &[("name", "Volkshochschule"), ("tags", "adult")],
    )
    .await;
    institution(&mut client, &csrf, &[("name", "Musikschule")]).await;

    let board = client.get("/leads/board").await;
    let new = part(&board.body, "id=\"column-new\"", "</section>");
    assert!(new.contains("<span class=\"count\">2</span>"), "{new}");
    assert!(new.contains(&format!("data-move=\"/leads/{lead}/stage\"")));
    assert!(!new.contains("move-back"), "the first column has no ←");

    let moved = client
        .send_with(
            Method::POST,
            &format!("/leads/{lead}/stage"),
            Some(&[
                ("_csrf", &csrf),
                ("stage", "contacted"),
                ("tag", "adult"),
                ("owner", ""),
            ]),
            &[("hx-request", "true")],
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    assert!(
        moved.body.starts_with("<div class=\"board\" id=\"board\""),
        "{}",
        moved.body
    );
    assert!(!moved.body.contains("<html"), "a fragment");
    let contacted = part(&moved.body, "id=\"column-contacted\"", "</section>");
    assert!(contacted.contains("Volkshochschule"), "{contacted}");
    assert!(
        !moved.body.contains("Musikschule"),
        "the tag filter is kept"
    );
    assert!(moved.body.contains("name=\"tag\" value=\"adult\""));

    let plain = client
        .post(
            &format!("/leads/{lead}/stage"),
            &[("_csrf", &csrf), ("stage", "lost"), ("tag", "adult")],
        )
        .await;
    assert_eq!(plain.status, StatusCode::SEE_OTHER);
    assert_eq!(
        plain.location(),
        format!("/leads/board?tag=adult#card-{lead}")
    );
    let stage: String =
        sqlx::query_scalar("SELECT stage FROM lead_institutions WHERE id = $1::uuid")
            .bind(&lead)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stage, "lost");
    let bad = client
        .post(
            &format!("/leads/{lead}/stage"),
            &[("_csrf", &csrf), ("stage", "sold")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let same = client
        .post(
            &format!("/leads/{lead}/stage"),
            &[("_csrf", &csrf), ("stage", "lost")],
        )
        .await;
    assert_eq!(same.status, StatusCode::SEE_OTHER);
    assert_eq!(
        actions(&pool).await,
        [
            "lead.institution.create",
            "lead.institution.create",
            "lead.institution.stage",
            "lead.institution.stage"
        ],
        "a move to where it is writes nothing"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn conversion_asks_first_then_links_the_customer(pool: PgPool) {
    let (mut client, csrf) = admin_client(&pool).await;
    let lead = institution(&mut client, &csrf, &[("name", "Klinikum Süd")]).await;
    let anna = contact(&mut client, &csrf, &lead, "Anna Berg").await;
    detail(
        &mut client,
        &csrf,
        &anna,
        "email",
        "anna@klinikum-sued.de",
        false,
    )
    .await;
    detail(
        &mut client,
        &csrf,
        &anna,
        "email",
        "it@klinikum-sued.de",
        true,
    )
    .await;

    let confirm = client.get(&format!("/leads/{lead}/convert")).await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.body);
    assert!(
        confirm.body.contains("value=\"it@klinikum-sued.de\""),
        "the primary address"
    );
    assert!(
        confirm
            .body
            .contains("id=\"name\" name=\"name\" value=\"Klinikum Süd\"")
    );
    let bad = client
        .post(
            &format!("/leads/{lead}/convert"),
            &[
                ("_csrf", &csrf),
                ("name", "Klinikum Süd"),
                ("email", "it-at-sued"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body
            .contains("id=\"email-error\">E-mail must be an e-mail address")
    );
    let customers: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(customers, 0);

    let done = client
        .post(
            &format!("/leads/{lead}/convert"),
            &[
                ("_csrf", &csrf),
                ("name", "Klinikum Süd"),
                ("email", "it@klinikum-sued.de"),
                ("company", "Klinikum Süd gGmbH"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), format!("/leads/{lead}?converted=1"));
    let customer: Uuid = sqlx::query_scalar("SELECT id FROM customers")
        .fetch_one(&pool)
        .await
        .unwrap();
    let page = client.get(done.location()).await;
    assert!(page.body.contains(&format!(
        "id=\"converted-banner\">Converted: <a href=\"/customers/{customer}\""
    )));
    assert!(page.body.contains(&format!(
        "href=\"/customers/{customer}\" id=\"customer-link\""
    )));
    assert!(page.body.contains("stage-won\">Won"));
    assert!(
        !page.body.contains("id=\"convert\""),
        "no second conversion offered"
    );
    let later = client.get(&format!("/leads/{lead}")).await;
    assert!(!later.body.contains("converted-banner"));
    assert!(later.body.contains("id=\"customer-link\""));

    let twice = client
        .post(
            &format!("/leads/{lead}/convert"),
            &[("_csrf", &csrf), ("name", "Klinikum Süd")],
        )
        .await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    assert!(twice.body.contains("id=\"already-converted\""));
    assert!(
        client
            .get(&format!("/leads/{lead}/convert"))
            .await
            .body
            .contains("id=\"already-converted\"")
    );
    let customer_page = client.get(&format!("/customers/{customer}")).await;
    assert!(customer_page.body.contains("Klinikum Süd gGmbH"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_viewer_reads_leads_but_every_change_is_refused(pool: PgPool) {
    let (mut client, csrf) = admin_client(&pool).await;
    let lead = institution(&mut client, &csrf, &[("name", "Grundschule Süd")]).await;
    let anna = contact(&mut client, &csrf, &lead, "Anna Berg").await;
    detail(&mut client, &csrf, &anna, "phone", "+49 30 1234567", true).await;
    let id = note(&mut client, &csrf, &lead, "", "Erstes Gespräch").await;
    let before = actions(&pool).await;

    admin(&pool, "victor", Role::Viewer).await;
    let mut viewer = Client::new(app(&pool), "192.0.2.141");
    let csrf = viewer.logged_in("victor").await;
    for uri in [
        "/leads".to_owned(),
        "/leads/board".to_owned(),
        "/leads/search?q=gespr%C3%A4ch".to_owned(),
        format!("/leads/{lead}"),
        format!("/leads/notes/{id}"),
    ] {
        let page = viewer.get(&uri).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}: {}", page.body);
        for control in [
            "id=\"new-institution\"",
            "id=\"institution-form\"",
            "id=\"contact-form\"",
            "class=\"detail-add\"",
            "id=\"note-form\"",
            "note-edit-form",
            "id=\"convert\"",
            "class=\"move\"",
            "draggable",
        ] {
            assert!(
                !page.body.contains(control),
                "no {control} on {uri} for a viewer"
            );
        }
    }
    let page = viewer.get(&format!("/leads/{lead}")).await;
    assert!(page.body.contains("+4930123456") && page.body.contains("Erstes Gespräch"));

    let mutating: Vec<_> = panel::protected_routes()
        .into_iter()
        .filter(|route| route.path.starts_with("/leads"))
        .filter(|route| {
            route.method != Method::GET
                || route.path.ends_with("/new")
                || route.path.ends_with("/convert")
        })
        .collect();
    assert_eq!(mutating.len(), 15, "{mutating:?}");
    let form = [
        ("_csrf", csrf.as_str()),
        ("name", "Changed"),
        ("full_name", "Changed"),
        ("stage", "won"),
        ("kind", "phone"),
        ("value", "+49 30 7654321"),
        ("body", "Changed"),
        ("base", "1"),
    ];
    viewer.refused_each(&mutating, &lead, &form).await;
    assert_eq!(actions(&pool).await, before, "nothing changed");
}
