//! The lead CRM's admin API end to end, without a socket: institutions,
//! contacts and details, versioned notes, search, conversion, scopes, the
//! CSV import (dry run and apply) and the export, each test on a fresh
//! migrated database.

#[allow(dead_code)]
mod support;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use latchkey_control::db::MIGRATOR;
use latchkey_control::db::admins::Role;
use latchkey_control::db::api_keys::{Area, Scope};
use latchkey_control::db::leads::{MAX_IMPORT_LINES, NOTE_MAX_CHARS};
use serde_json::{Value, json};
use sqlx::PgPool;
use support::api::{Api, Reply, V1};

const CSV: Option<&str> = Some("text/csv");

fn url(path: &str) -> String {
    format!("{V1}/leads{path}")
}

async fn institution(api: &Api, body: Value) -> Value {
    api.post(&url("/institutions"), body)
        .await
        .ok(StatusCode::CREATED)
        .clone()
}

async fn contact(api: &Api, institution: &Value, name: &str) -> Value {
    let uri = url(&format!(
        "/institutions/{}/contacts",
        institution["id"].as_str().unwrap()
    ));
    api.post(&uri, json!({ "full_name": name }))
        .await
        .ok(StatusCode::CREATED)
        .clone()
}

async fn patch(api: &Api, uri: &str, body: Value) -> Reply {
    api.call(Method::PATCH, uri, Some(body)).await
}

async fn delete(api: &Api, uri: &str) -> Reply {
    api.call(Method::DELETE, uri, None).await
}

/// A JSON body under a request id of the test's choosing.
async fn send_as(api: &Api, method: Method, uri: &str, request_id: &str, body: Value) -> Reply {
    api.send(
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", api.admin))
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-request-id", request_id)
            .body(Body::from(body.to_string()))
            .unwrap(),
    )
    .await
}

async fn import(api: &Api, path: &str, csv: &str) -> Reply {
    api.raw(Method::POST, &url(path), &api.admin, CSV, csv.to_owned())
        .await
}

async fn count(api: &Api, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&api.pool)
        .await
        .unwrap()
}

fn names(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["name"].as_str().unwrap())
        .collect()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn institutions_are_made_listed_filtered_changed_and_deleted(pool: PgPool) {
    let owner = support::panel::admin(&pool, "anna", Role::Admin).await;
    let api = Api::new(pool).await;

    let made = send_as(
        &api,
        Method::POST,
        &url("/institutions"),
        "lead-create-1",
        json!({
            "name": "  Gymnasium Nord ",
            "kind": "school",
            "website": "https://gym-nord.de",
            "city": "Bonn",
            "stage": "contacted",
            "owner_id": owner,
            "tags": ["School", "NRW", "school"],
            "extra": {"pupils": 900}
        }),
    )
    .await;
    let school = made.ok(StatusCode::CREATED).clone();
    let id = school["id"].as_str().unwrap().to_owned();
    assert_eq!(
        made.headers[header::LOCATION].to_str().unwrap(),
        url(&format!("/institutions/{id}"))
    );
    assert_eq!(school["name"], "Gymnasium Nord");
    assert_eq!(school["tags"], json!(["school", "nrw"]));
    assert_eq!(school["owner_id"], json!(owner));
    let audit = api.audit("lead-create-1").await;
    assert_eq!(
        (
            audit.len(),
            audit[0].action.as_str(),
            audit[0].entity_id.as_deref()
        ),
        (1, "lead.institution.create", Some(id.as_str()))
    );

    institution(
        &api,
        json!({"name": "Klinikum Süd", "kind": "hospital", "tags": ["health"]}),
    )
    .await;
    let uni = institution(
        &api,
        json!({"name": "Universität Ost", "stage": "qualified"}),
    )
    .await;

    let all = api.get(&url("/institutions")).await;
    let all = all.ok(StatusCode::OK);
    assert_eq!(all["total"], 3);
    assert_eq!(
        names(all),
        ["Universität Ost", "Klinikum Süd", "Gymnasium Nord"]
    );
    let page = api.get(&url("/institutions?per_page=1&page=2")).await;
    assert_eq!(names(page.ok(StatusCode::OK)), ["Klinikum Süd"]);
    for (query, expected) in [
        ("stage=qualified", vec!["Universität Ost"]),
        ("tag=SCHOOL", vec!["Gymnasium Nord"]),
        (&format!("owner_id={owner}") as &str, vec!["Gymnasium Nord"]),
        ("q=Klinikum", vec!["Klinikum Süd"]),
        (
            "q=%20",
            vec!["Universität Ost", "Klinikum Süd", "Gymnasium Nord"],
        ),
        ("stage=new&tag=health", vec!["Klinikum Süd"]),
        ("stage=lost", vec![]),
    ] {
        let listed = api.get(&url(&format!("/institutions?{query}"))).await;
        assert_eq!(names(listed.ok(StatusCode::OK)), expected, "{query}");
    }
    // `q` finds an institution by what its contacts and notes say too.
    let berta = contact(&api, &uni, "Berta Schmidt").await;
    api.post(
        &url(&format!(
            "/contacts/{}/notes",
            berta["id"].as_str().unwrap()
        )),
        json!({"body": "Wir brauchen Verträge für 40 Tablets"}),
    )
    .await
    .ok(StatusCode::CREATED);
    for q in ["Schmidt", "Vertrag", "tablet"] {
        let listed = api.get(&url(&format!("/institutions?q={q}"))).await;
        assert_eq!(names(listed.ok(StatusCode::OK)), ["Universität Ost"], "{q}");
    }

    let uri = url(&format!("/institutions/{id}"));
    assert_eq!(api.get(&uri).await.ok(StatusCode::OK), &school);
    let changed = send_as(
        &api,
        Method::PATCH,
        &uri,
        "lead-update-1",
        json!({"stage": "proposal", "website": null, "tags": ["eu"]}),
    )
    .await;
    let changed = changed.ok(StatusCode::OK);
    assert_eq!(
        (
            &changed["stage"],
            &changed["website"],
            &changed["tags"],
            &changed["city"]
        ),
        (
            &json!("proposal"),
            &Value::Null,
            &json!(["eu"]),
            &json!("Bonn")
        )
    );
    let audit = api.audit("lead-update-1").await;
    assert_eq!(audit[0].action, "lead.institution.update");
    assert_eq!(audit[0].before.as_ref().unwrap()["stage"], "contacted");
    assert_eq!(audit[0].after.as_ref().unwrap()["stage"], "proposal");
    let unchanged = send_as(&api, Method::PATCH, &uri, "lead-update-2", json!({})).await;
    assert_eq!(unchanged.ok(StatusCode::OK), changed);
    assert!(
        api.audit("lead-update-2").await.is_empty(),
        "{{}} writes nothing"
    );

    let deleted = send_as(&api, Method::DELETE, &uri, "lead-delete-1", json!({})).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.audit("lead-delete-1").await[0].action,
        "lead.institution.delete"
    );
    api.get(&uri)
        .await
        .expect(StatusCode::NOT_FOUND, "NOT_FOUND", None);
    delete(&api, &uri)
        .await
        .expect(StatusCode::NOT_FOUND, "NOT_FOUND", None);
    patch(&api, &uri, json!({"stage": "won"})).await.expect(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        None,
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn bad_institution_input_is_refused_naming_the_field(pool: PgPool) {
    let api = Api::new(pool).await;
    let made = institution(&api, json!({"name": "Schule"})).await;
    let uri = url(&format!("/institutions/{}", made["id"].as_str().unwrap()));
    let list = url("/institutions");
    let cases: Vec<(Reply, &str)> = vec![
        (
            api.post(&list, json!({"name": "A", "nickname": "a"})).await,
            "nickname",
        ),
        (api.post(&list, json!({"kind": "school"})).await, "name"),
        (api.post(&list, json!({"name": "  "})).await, "name"),
        (
            api.post(&list, json!({"name": "A", "website": "gym.de"}))
                .await,
            "website",
        ),
        (
            api.post(&list, json!({"name": "A", "stage": "hot"})).await,
            "stage",
        ),
        (
            api.post(&list, json!({"name": "A", "tags": ["ok", " "]}))
                .await,
            "tags",
        ),
        (
            api.post(&list, json!({"name": "A", "extra": [1]})).await,
            "extra",
        ),
        (
            api.post(
                &list,
                json!({"name": "A", "owner_id": uuid::Uuid::new_v4()}),
            )
            .await,
            "owner_id",
        ),
        (patch(&api, &uri, json!({"stage": "hot"})).await, "stage"),
        (patch(&api, &uri, json!({"colour": "red"})).await, "colour"),
        (api.get(&format!("{list}?sort=name")).await, "sort"),
        (api.get(&format!("{list}?stage=hot")).await, "stage"),
        (api.get(&format!("{list}?q={}", "a".repeat(257))).await, "q"),
        (api.get(&url("/institutions/not-a-uuid")).await, "id"),
    ];
    for (reply, field) in cases {
        reply.expect(StatusCode::BAD_REQUEST, "INVALID_REQUEST", Some(field));
    }
    let not_json = api
        .raw(Method::POST, &list, &api.admin, Some("text/plain"), "{}")
        .await;
    not_json.expect(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
        None,
    );
    assert_eq!(count(&api, "lead_institutions").await, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn contacts_and_their_details(pool: PgPool) {
    let api = Api::new(pool).await;
    let school = institution(&api, json!({"name": "Gymnasium Nord"})).await;
    let school_id = school["id"].as_str().unwrap();

    let made = send_as(
        &api,
        Method::POST,
        &url(&format!("/institutions/{school_id}/contacts")),
        "contact-create-1",
        json!({"full_name": " Dr. Berta Klein ", "title": "IT-Leitung"}),
    )
    .await;
    let berta = made.ok(StatusCode::CREATED).clone();
    let berta_id = berta["id"].as_str().unwrap();
    let contact_uri = url(&format!("/contacts/{berta_id}"));
    assert_eq!(
        made.headers[header::LOCATION].to_str().unwrap(),
        contact_uri
    );
    assert_eq!(berta["full_name"], "Dr. Berta Klein");
    assert_eq!(
        api.audit("contact-create-1").await[0].action,
        "lead.contact.create"
    );
    contact(&api, &school, "Anton Adler").await;
    let listed = api
        .get(&url(&format!("/institutions/{school_id}/contacts")))
        .await;
    let listed = listed.ok(StatusCode::OK);
    assert_eq!(listed["total"], 2);
    assert_eq!(listed["items"][0]["full_name"], "Anton Adler");
    api.get(&url(&format!(
        "/institutions/{}/contacts",
        uuid::Uuid::new_v4()
    )))
    .await
    .expect(StatusCode::NOT_FOUND, "NOT_FOUND", None);
    api.post(
        &url(&format!("/institutions/{}/contacts", uuid::Uuid::new_v4())),
        json!({"full_name": "Nobody"}),
    )
    .await
    .expect(StatusCode::NOT_FOUND, "NOT_FOUND", None);

    let details = format!("{contact_uri}/details");
    let email = api
        .post(
            &details,
            json!({"kind": "email", "value": " Berta.Klein@Gym-Nord.DE ", "is_primary": true}),
        )
        .await;
    let email = email.ok(StatusCode::CREATED).clone();
    assert_eq!(email["value"], "Berta.Klein@gym-nord.de");
    let phone = api
        .post(
            &details,
            json!({"kind": "phone", "value": "+49 (228) 123-45.67", "label": "office"}),
        )
        .await;
    let phone = phone.ok(StatusCode::CREATED).clone();
    assert_eq!(phone["value"], "+492281234567");
    let refusals: Vec<(Reply, StatusCode, &str)> = vec![
        (
            api.post(&details, json!({"kind": "email", "value": "berta@"}))
                .await,
            StatusCode::BAD_REQUEST,
            "email",
        ),
        (
            api.post(&details, json!({"kind": "phone", "value": "0228 1234567"}))
                .await,
            StatusCode::BAD_REQUEST,
            "phone",
        ),
        (
            api.post(&details, json!({"kind": "fax", "value": "1"}))
                .await,
            StatusCode::BAD_REQUEST,
            "kind",
        ),
        (
            api.post(
                &details,
                json!({"kind": "phone", "value": "+492281234567", "note": 1}),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "note",
        ),
        (
            api.post(
                &details,
                json!({"kind": "phone", "value": "+49 228 1234567"}),
            )
            .await,
            StatusCode::CONFLICT,
            "phone",
        ),
    ];
    for (reply, status, field) in refusals {
        let code = if status == StatusCode::CONFLICT {
            "CONFLICT"
        } else {
            "INVALID_REQUEST"
        };
        reply.expect(status, code, Some(field));
    }

    let detail_uri = url(&format!("/details/{}", phone["id"]));
    let primary = patch(
        &api,
        &detail_uri,
        json!({"is_primary": true, "label": null}),
    )
    .await;
    let primary = primary.ok(StatusCode::OK);
    assert_eq!(
        (&primary["is_primary"], &primary["label"]),
        (&json!(true), &Value::Null)
    );
    let moved = patch(
        &api,
        &detail_uri,
        json!({"kind": "phone", "value": "+49 30 1234567"}),
    )
    .await;
    assert_eq!(moved.ok(StatusCode::OK)["value"], "+49301234567");
    patch(&api, &detail_uri, json!({"kind": "email"}))
        .await
        .expect(StatusCode::BAD_REQUEST, "INVALID_REQUEST", Some("value"));
    patch(&api, &detail_uri, json!({"value": "a@b.de"}))
        .await
        .expect(StatusCode::BAD_REQUEST, "INVALID_REQUEST", Some("kind"));
    patch(&api, &detail_uri, json!({"kind": "email", "value": "nope"}))
        .await
        .expect(StatusCode::BAD_REQUEST, "INVALID_REQUEST", Some("email"));
    patch(&api, &url("/details/999999"), json!({"is_primary": true}))
        .await
        .expect(StatusCode::NOT_FOUND, "NOT_FOUND", None);

    let read = api.get(&contact_uri).await;
    let read = read.ok(StatusCode::OK);
    assert_eq!(read["title"], "IT-Leitung");
    assert_eq!(read["details"].as_array().unwrap().len(), 2);

    let retitled = patch(&api, &contact_uri, json!({"title": null})).await;
    let retitled = retitled.ok(StatusCode::OK);
    assert_eq!(
        (&retitled["title"], &retitled["full_name"]),
        (&Value::Null, &json!("Dr. Berta Klein"))
    );
    patch(&api, &contact_uri, json!({"full_name": ""}))
        .await
        .expect(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            Some("full_name"),
        );

    assert_eq!(
        delete(&api, &detail_uri).await.status,
        StatusCode::NO_CONTENT
    );
    delete(&api, &detail_uri)
        .await
        .expect(StatusCode::NOT_FOUND, "NOT_FOUND", None);

    // A deleted contact is gone from the API; its note stays on the institution.
    api.post(
        &format!("{contact_uri}/notes"),
        json!({"body": "Rückruf am Montag"}),
    )
    .await
    .ok(StatusCode::CREATED);
    assert_eq!(
        delete(&api, &contact_uri).await.status,
        StatusCode::NO_CONTENT
    );
    api.get(&contact_uri)
        .await
        .expect(StatusCode::NOT_FOUND, "NOT_FOUND", None);
    api.get(&format!("{contact_uri}/notes"))
        .await
        .expect(StatusCode::NOT_FOUND, "NOT_FOUND", None);
    let notes = api
        .get(&url(&format!("/institutions/{school_id}/notes")))
        .await;
    assert_eq!(
        notes.ok(StatusCode::OK)["items"][0]["body"],
        "Rückruf am Montag"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn notes_keep_every_version_and_refuse_stale_and_oversized_edits(pool: PgPool) {
    let api = Api::new(pool).await;
    let school = institution(&api, json!({"name": "Gymnasium Nord"})).await;
    let school_id = school["id"].as_str().unwrap();
    let berta = contact(&api, &school, "Berta Klein").await;
    let notes = url(&format!("/institutions/{school_id}/notes"));

    let made = send_as(
        &api,
        Method::POST,
        &notes,
        "note-create-1",
        json!({"body": "Erstkontakt"}),
    )
    .await;
    let note = made.ok(StatusCode::CREATED).clone();
    let note_uri = url(&format!("/notes/{}", note["id"].as_str().unwrap()));
    assert_eq!(made.headers[header::LOCATION].to_str().unwrap(), note_uri);
    assert_eq!(
        (&note["version"], &note["contact_id"]),
        (&json!(1), &Value::Null)
    );
    assert_eq!(
        api.audit("note-create-1").await[0].action,
        "lead.note.create"
    );
    let about_berta = api
        .post(
            &url(&format!(
                "/contacts/{}/notes",
                berta["id"].as_str().unwrap()
            )),
            json!({"body": "Berta ruft zurück"}),
        )
        .await;
    assert_eq!(
        about_berta.ok(StatusCode::CREATED)["contact_id"],
        berta["id"]
    );
    let listed = api.get(&notes).await;
    assert_eq!(
        listed.ok(StatusCode::OK)["total"],
        2,
        "the contact's note is the institution's too"
    );
    let berta_notes = api
        .get(&url(&format!(
            "/contacts/{}/notes",
            berta["id"].as_str().unwrap()
        )))
        .await;
    assert_eq!(berta_notes.ok(StatusCode::OK)["total"], 1);

    let edited = send_as(
        &api,
        Method::PATCH,
        &note_uri,
        "note-edit-1",
        json!({"base_version": 1, "body": "Erstkontakt, Angebot folgt"}),
    )
    .await;
    assert_eq!(edited.ok(StatusCode::OK)["version"], 2);
    let audit = api.audit("note-edit-1").await;
    assert_eq!(audit[0].action, "lead.note.update");
    assert_eq!(audit[0].before.as_ref().unwrap()["body"], "Erstkontakt");
    let stale = patch(&api, &note_uri, json!({"base_version": 1, "body": "mine"})).await;
    stale.expect(StatusCode::CONFLICT, "CONFLICT", Some("version"));
    assert!(
        stale.body["message"]
            .as_str()
            .unwrap()
            .contains("version 2")
    );

    let oversized = "x".repeat(NOTE_MAX_CHARS + 1);
    api.post(&notes, json!({"body": oversized})).await.expect(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        Some("body"),
    );
    patch(
        &api,
        &note_uri,
        json!({"base_version": 2, "body": oversized}),
    )
    .await
    .expect(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        Some("body"),
    );
    // Exactly the most is fine; a body above `max_body_bytes` is refused whole.
    api.post(&notes, json!({"body": "ü".repeat(NOTE_MAX_CHARS)}))
        .await
        .ok(StatusCode::CREATED);
    api.post(&notes, json!({"body": "x".repeat(2 << 20)}))
        .await
        .expect(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", None);
    api.post(&notes, json!({"body": " "})).await.expect(
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
        Some("body"),
    );
    api.post(&notes, json!({"body": "a", "pinned": true}))
        .await
        .expect(StatusCode::BAD_REQUEST, "INVALID_REQUEST", Some("pinned"));
    patch(&api, &note_uri, json!({"body": "no base"}))
        .await
        .expect(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            Some("base_version"),
        );

    delete(&api, &format!("{note_uri}?base_version=1"))
        .await
        .expect(StatusCode::CONFLICT, "CONFLICT", Some("version"));
    delete(&api, &note_uri).await.expect(
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
        Some("base_version"),
    );
    assert_eq!(
        delete(&api, &format!("{note_uri}?base_version=2"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let tombstone = api.get(&note_uri).await;
    let tombstone = tombstone.ok(StatusCode::OK);
    assert_eq!(
        (&tombstone["version"], &tombstone["body"]),
        (&json!(3), &json!(""))
    );
    assert!(tombstone["deleted_at"].is_string());
    patch(&api, &note_uri, json!({"base_version": 3, "body": "again"}))
        .await
        .expect(StatusCode::CONFLICT, "CONFLICT", Some("version"));
    let history = api.get(&format!("{note_uri}/history")).await;
    let history: Vec<(i64, &str, bool)> = history
        .ok(StatusCode::OK)
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_i64().unwrap(),
                v["body"].as_str().unwrap(),
                v["deleted"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            (1, "Erstkontakt", false),
            (2, "Erstkontakt, Angebot folgt", false),
            (3, "", true)
        ]
    );
    let unknown = url(&format!("/notes/{}", uuid::Uuid::new_v4()));
    for reply in [
        api.get(&unknown).await,
        api.get(&format!("{unknown}/history")).await,
        patch(&api, &unknown, json!({"base_version": 1, "body": "x"})).await,
        delete(&api, &format!("{unknown}?base_version=1")).await,
    ] {
        reply.expect(StatusCode::NOT_FOUND, "NOT_FOUND", None);
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn search_finds_institutions_contacts_and_notes(pool: PgPool) {
    let api = Api::new(pool).await;
    let school = institution(&api, json!({"name": "Hochschule Rhein"})).await;
    let berta = contact(&api, &school, "Berta Schmidt").await;
    api.post(
        &url(&format!(
            "/institutions/{}/notes",
            school["id"].as_str().unwrap()
        )),
        json!({"body": "The board approved the contracts"}),
    )
    .await
    .ok(StatusCode::CREATED);

    for (q, matched) in [
        ("Hochschule", "institution"),
        ("Schmidt", "contact"),
        ("approve", "note"),
        ("Vertrag%20OR%20contract", "note"),
    ] {
        let hits = api.get(&url(&format!("/search?q={q}"))).await;
        let hits = hits.ok(StatusCode::OK).as_array().unwrap().clone();
        assert_eq!(hits.len(), 1, "{q}: {hits:?}");
        assert_eq!(
            (hits[0]["matched"].as_str(), &hits[0]["institution_id"]),
            (Some(matched), &school["id"]),
            "{q}"
        );
    }
    let hits = api.get(&url("/search?q=Schmidt")).await;
    assert_eq!(hits.ok(StatusCode::OK)[0]["contact_id"], berta["id"]);
    assert_eq!(
        api.get(&url("/search?q=nothing&limit=1"))
            .await
            .ok(StatusCode::OK),
        &json!([])
    );
    for (query, field) in [
        ("q=a&limit=0", "limit"),
        ("q=a&limit=201", "limit"),
        ("q=%20", "q"),
        ("limit=5", "q"),
        ("q=a&in=notes", "in"),
    ] {
        api.get(&url(&format!("/search?{query}"))).await.expect(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            Some(field),
        );
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_institution_converts_to_a_customer_once(pool: PgPool) {
    let api = Api::new(pool).await;
    let school = institution(&api, json!({"name": "Gymnasium Nord"})).await;
    let uri = url(&format!(
        "/institutions/{}/convert",
        school["id"].as_str().unwrap()
    ));

    api.post(&uri, json!({"email": "not-an-address"}))
        .await
        .expect(StatusCode::BAD_REQUEST, "INVALID_REQUEST", Some("email"));
    let only_leads = api.key(&[Scope::write(Area::Leads)]).await;
    let refused = api
        .call_as(&only_leads, Method::POST, &uri, Some(json!({})))
        .await;
    refused.expect(StatusCode::FORBIDDEN, "FORBIDDEN", None);
    assert!(
        refused.body["message"]
            .as_str()
            .unwrap()
            .contains("customers:write")
    );
    assert_eq!(count(&api, "customers").await, 0);

    let converted = send_as(
        &api,
        Method::POST,
        &uri,
        "convert-1",
        json!({"email": "office@gym-nord.de"}),
    )
    .await;
    let body = converted.ok(StatusCode::CREATED).clone();
    let customer_id = body["customer"]["id"].as_str().unwrap();
    assert_eq!(
        converted.headers[header::LOCATION].to_str().unwrap(),
        format!("{V1}/customers/{customer_id}")
    );
    assert_eq!(body["customer"]["name"], "Gymnasium Nord");
    assert_eq!(
        (
            &body["institution"]["stage"],
            &body["institution"]["customer_id"]
        ),
        (&json!("won"), &json!(customer_id))
    );
    let actions: Vec<String> = api
        .audit("convert-1")
        .await
        .into_iter()
        .map(|row| row.action)
        .collect();
    assert_eq!(actions, ["customer.create", "lead.institution.convert"]);

    api.post(&uri, json!({}))
        .await
        .expect(StatusCode::CONFLICT, "CONFLICT", None);
    api.post(
        &url(&format!("/institutions/{}/convert", uuid::Uuid::new_v4())),
        json!({}),
    )
    .await
    .expect(StatusCode::NOT_FOUND, "NOT_FOUND", None);
    assert_eq!(count(&api, "customers").await, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_leads_read_key_reads_but_cannot_write(pool: PgPool) {
    let api = Api::new(pool).await;
    let school = institution(&api, json!({"name": "Gymnasium Nord"})).await;
    let id = school["id"].as_str().unwrap();
    let reader = api.key(&[Scope::read(Area::Leads)]).await;
    let stranger = api.key(&[Scope::write(Area::Customers)]).await;

    for uri in [
        url("/institutions"),
        url(&format!("/institutions/{id}")),
        url("/search?q=Nord"),
        url("/institutions/export"),
    ] {
        let (status, _, _) = api
            .bytes(
                Request::get(&uri)
                    .header(header::AUTHORIZATION, format!("Bearer {reader}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        let refused = api.call_as(&stranger, Method::GET, &uri, None).await;
        refused.expect(StatusCode::FORBIDDEN, "FORBIDDEN", None);
        assert!(
            refused.body["message"]
                .as_str()
                .unwrap()
                .contains("leads:read")
        );
    }
    let writes = [
        (
            Method::POST,
            url("/institutions"),
            Some(json!({"name": "X"})),
        ),
        (
            Method::PATCH,
            url(&format!("/institutions/{id}")),
            Some(json!({"name": "X"})),
        ),
        (Method::DELETE, url(&format!("/institutions/{id}")), None),
        (
            Method::POST,
            url(&format!("/institutions/{id}/notes")),
            Some(json!({"body": "x"})),
        ),
        (
            Method::POST,
            url(&format!("/institutions/{id}/contacts")),
            Some(json!({"full_name": "X"})),
        ),
    ];
    for (method, uri, body) in writes {
        let refused = api.call_as(&reader, method.clone(), &uri, body).await;
        refused.expect(StatusCode::FORBIDDEN, "FORBIDDEN", None);
        assert!(
            refused.body["message"]
                .as_str()
                .unwrap()
                .contains("leads:write"),
            "{method} {uri}"
        );
    }
    let import = api
        .raw(
            Method::POST,
            &url("/import/dry-run"),
            &reader,
            CSV,
            "institution\nA\n",
        )
        .await;
    import.expect(StatusCode::FORBIDDEN, "FORBIDDEN", None);
    assert_eq!(
        api.get(&url(&format!("/institutions/{id}")))
            .await
            .ok(StatusCode::OK),
        &school
    );
}

const GOOD_FILE: &str = "\u{feff}External_ID,institution,kind,stage,website,city,tags,contact,title,emails,phones
crm-1,Gymnasium Nord,school,contacted,https://gym-nord.de,Bonn,school;NRW,Berta Klein,IT-Leitung,berta@gym-nord.de;b.klein@GYM-NORD.de,+49 228 1234567
crm-1,Gymnasium Nord,,,,,eu,Anton Adler,,anton@gym-nord.de,
crm-1,Gymnasium Nord,,,,,,berta klein,,,+49 228 7654321
,Klinikum Süd,hospital,,,,,,,,
,\"Universität Ost, Campus B\",university,,,,,\"Carla \"\"CJ\"\" Jung\",Dekanat,,
";

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_import_is_dry_run_then_applied_once(pool: PgPool) {
    let api = Api::new(pool).await;
    let audited_before = count(&api, "audit_log").await;

    let dry = import(&api, "/import/dry-run", GOOD_FILE).await;
    let dry = dry.ok(StatusCode::OK).clone();
    assert_eq!(dry["problems"], json!([]), "{dry}");
    assert_eq!(dry["applied"], false);
    let expected = json!({
        "lines": 5,
        "institutions_created": 3,
        "institutions_updated": 0,
        "institutions_unchanged": 0,
        "contacts_created": 3,
        "contacts_updated": 0,
        "details_added": 5,
    });
    assert_eq!(dry["summary"], expected);
    assert_eq!(
        count(&api, "lead_institutions").await,
        0,
        "a dry run writes nothing"
    );
    assert_eq!(count(&api, "audit_log").await, audited_before);

    let applied = api
        .send(
            Request::post(url("/import"))
                .header(header::AUTHORIZATION, format!("Bearer {}", api.admin))
                .header(header::CONTENT_TYPE, "text/csv; charset=utf-8")
                .header("x-request-id", "import-1")
                .body(Body::from(GOOD_FILE))
                .unwrap(),
        )
        .await;
    let applied = applied.ok(StatusCode::OK).clone();
    assert_eq!(
        (&applied["applied"], &applied["summary"]),
        (&json!(true), &expected)
    );
    let audit = api.audit("import-1").await;
    assert_eq!(
        audit.len(),
        3 + 3 + 5,
        "one row per institution, contact and detail"
    );

    let listed = api.get(&url("/institutions")).await;
    let listed = listed.ok(StatusCode::OK).clone();
    let nord = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "Gymnasium Nord")
        .unwrap()
        .clone();
    assert_eq!(
        (&nord["stage"], &nord["tags"], &nord["website"]),
        (
            &json!("contacted"),
            &json!(["school", "nrw", "eu"]),
            &json!("https://gym-nord.de")
        )
    );
    assert!(names(&listed).contains(&"Universität Ost, Campus B"));
    let contacts = api
        .get(&url(&format!(
            "/institutions/{}/contacts",
            nord["id"].as_str().unwrap()
        )))
        .await;
    let contacts = contacts.ok(StatusCode::OK)["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(contacts.len(), 2);
    let berta = api
        .get(&url(&format!(
            "/contacts/{}",
            contacts[1]["id"].as_str().unwrap()
        )))
        .await;
    let berta = berta.ok(StatusCode::OK).clone();
    assert_eq!(
        (&berta["full_name"], &berta["title"]),
        (&json!("Berta Klein"), &json!("IT-Leitung"))
    );
    let details: Vec<(&str, &str, bool)> = berta["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap(),
                d["value"].as_str().unwrap(),
                d["is_primary"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        details,
        [
            ("email", "berta@gym-nord.de", true),
            ("email", "b.klein@gym-nord.de", false),
            ("phone", "+492281234567", true),
            ("phone", "+492287654321", false),
        ]
    );

    // The same file again changes nothing; one that adds, adds only that.
    let again = import(&api, "/import", GOOD_FILE).await;
    assert_eq!(
        again.ok(StatusCode::OK)["summary"],
        json!({
            "lines": 5,
            "institutions_created": 0,
            "institutions_updated": 0,
            "institutions_unchanged": 3,
            "contacts_created": 0,
            "contacts_updated": 0,
            "details_added": 0,
        })
    );
    let more = "external_id,institution,stage,tags,contact,title,phones
crm-1,Gymnasium Nord,qualified,Bund,Berta Klein,Schulleitung,+49 228 1234567;+49 228 999999
,klinikum süd,,,,,
";
    let added = import(&api, "/import", more).await;
    assert_eq!(
        added.ok(StatusCode::OK)["summary"],
        json!({
            "lines": 2,
            "institutions_created": 0,
            "institutions_updated": 1,
            "institutions_unchanged": 1,
            "contacts_created": 0,
            "contacts_updated": 1,
            "details_added": 1,
        }),
        "found by its name in another case, Klinikum Süd keeps its own"
    );
    let nord = api
        .get(&url(&format!(
            "/institutions/{}",
            nord["id"].as_str().unwrap()
        )))
        .await;
    assert_eq!(
        nord.ok(StatusCode::OK)["tags"],
        json!(["school", "nrw", "eu", "bund"])
    );
    assert_eq!(count(&api, "lead_institutions").await, 3);
    assert_eq!(count(&api, "lead_import_ids").await, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_import_reports_every_problem_and_applies_nothing_then(pool: PgPool) {
    let api = Api::new(pool).await;
    // Two institutions share a name: a line naming it without an external id
    // cannot say which it means.
    institution(&api, json!({"name": "Schule Mitte"})).await;
    institution(&api, json!({"name": "schule mitte"})).await;
    let file = "institution,external_id,stage,website,contact,title,emails,phones
Gymnasium Nord,,new,https://gym-nord.de,Berta Klein,,berta@gym-nord.de,
Realschule West,,,,Otto Paul,,otto@,
Realschule West,,,,Otto Paul,,,0228 1234567
Grundschule Ost,,hot,gym.de,,,,
Grundschule Ost,,,,,Rektorin,,
Gymnasium Nord,,lost,,,,,
Schule Mitte,,,,,,,
,,,,Ida,,,
\"Zu viele\",1,2,3,4,5,6,7,8
";
    let dry = import(&api, "/import/dry-run", file).await;
    let dry = dry.ok(StatusCode::OK).clone();
    let problems: Vec<(u64, Option<&str>)> = dry["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["line"].as_u64().unwrap(), p["field"].as_str()))
        .collect();
    assert_eq!(
        problems,
        [
            (3, Some("emails")),
            (4, Some("phones")),
            (5, Some("website")),
            (5, Some("stage")),
            (6, Some("contact")),
            (7, Some("stage")),
            (8, Some("institution")),
            (9, Some("institution")),
            (10, None),
        ],
        "{dry}"
    );
    assert!(
        dry["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("otto@")
    );
    assert!(
        dry["problems"][5]["message"]
            .as_str()
            .unwrap()
            .contains("line 2")
    );
    assert_eq!(dry["summary"]["lines"], 9);
    assert_eq!(dry["summary"]["institutions_created"], 0);

    let applied = import(&api, "/import", file).await;
    applied.expect(StatusCode::BAD_REQUEST, "INVALID_REQUEST", Some("emails"));
    let message = applied.body["message"].as_str().unwrap();
    assert!(
        message.starts_with("line 3: ") && message.contains("and 8 more"),
        "{message}"
    );
    assert_eq!(
        count(&api, "lead_institutions").await,
        2,
        "not even the good lines"
    );
    assert_eq!(count(&api, "lead_contacts").await, 0);

    // Problems of the header end the check there.
    let header = import(
        &api,
        "/import/dry-run",
        "Institution,colour,institution\nA,red,A\n",
    )
    .await;
    let header = header.ok(StatusCode::OK).clone();
    let problems: Vec<(u64, Option<&str>)> = header["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["line"].as_u64().unwrap(), p["field"].as_str()))
        .collect();
    assert_eq!(problems, [(1, Some("colour")), (1, Some("institution"))]);
    let empty = import(&api, "/import/dry-run", "").await;
    assert_eq!(empty.ok(StatusCode::OK)["problems"][0]["line"], 1);
    let no_name = import(&api, "/import/dry-run", "city\nBonn\n").await;
    assert_eq!(
        no_name.ok(StatusCode::OK)["problems"][0]["field"],
        "institution"
    );

    api.raw(
        Method::POST,
        &url("/import"),
        &api.admin,
        Some("application/json"),
        "{}",
    )
    .await
    .expect(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
        None,
    );
    api.raw(
        Method::POST,
        &url("/import"),
        &api.admin,
        CSV,
        vec![b'a', 0xff, b'\n'],
    )
    .await
    .expect(StatusCode::BAD_REQUEST, "INVALID_REQUEST", None);
    let too_many: String = std::iter::once("institution\n".to_owned())
        .chain((0..=MAX_IMPORT_LINES).map(|n| format!("S{n}\n")))
        .collect();
    let too_many = import(&api, "/import/dry-run", &too_many).await;
    assert_eq!(
        too_many.ok(StatusCode::OK)["problems"][0]["line"],
        MAX_IMPORT_LINES as u64 + 2
    );
    assert_eq!(count(&api, "lead_institutions").await, 2);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_filtered_list_exports_as_csv_and_json(pool: PgPool) {
    let api = Api::new(pool).await;
    institution(
        &api,
        json!({"name": "=HYPERLINK(\"http://x\")", "tags": ["school"], "city": "Bonn"}),
    )
    .await;
    institution(
        &api,
        json!({"name": "Gymnasium Nord", "tags": ["school", "nrw"], "extra": {"a": 1}}),
    )
    .await;
    institution(&api, json!({"name": "Klinikum Süd", "tags": ["health"]})).await;
    let get = |uri: String| {
        let api = &api;
        async move {
            api.bytes(
                Request::get(uri)
                    .header(header::AUTHORIZATION, format!("Bearer {}", api.admin))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
        }
    };

    let (status, headers, body) = get(url("/institutions/export?tag=school")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert_eq!(
        headers[header::CONTENT_DISPOSITION],
        "attachment; filename=\"institutions.csv\""
    );
    assert_eq!(headers["x-total-count"], "2");
    let text = String::from_utf8(body.to_vec()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(
        lines[0],
        "id,name,kind,stage,website,country,city,address,tags,owner_id,customer_id,converted_at,extra,created_at,updated_at"
    );
    assert!(
        lines[1].contains(",Gymnasium Nord,,new,") && lines[1].contains(",school;nrw,"),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains(r#","{""a"":1}","#), "{}", lines[1]);
    assert!(
        lines[2].contains(r#","'=HYPERLINK(""http://x"")","#),
        "defused: {}",
        lines[2]
    );

    let (status, headers, body) = get(url("/institutions/export?format=json&q=Klinikum")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let rows: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["name"], "Klinikum Süd");

    for (query, field) in [
        ("format=xml", "format"),
        ("colour=red", "colour"),
        ("stage=hot", "stage"),
    ] {
        api.get(&url(&format!("/institutions/export?{query}")))
            .await
            .expect(StatusCode::BAD_REQUEST, "INVALID_REQUEST", Some(field));
    }
}
